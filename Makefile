# ductape: PGXS build.
#
#   make && make install        build and install the extension
#   make installcheck           pg_regress on a throwaway instance (needs
#                               the test API server; scripts/test runs it all)
#   make prove_installcheck     TAP tests under test/t

EXTENSION = ductape
MODULE_big = ductape
OBJS = \
	src/ductape.o \
	src/jsonb_util.o \
	src/settings.o \
	src/shmem.o \
	src/registry.o \
	src/template.o \
	src/catalog.o \
	src/request.o \
	src/schema.o \
	src/import.o \
	src/secrets.o \
	src/oauth.o \
	src/jobs.o \
	src/gate.o \
	src/runtime.o \
	src/queue.o \
	src/http.o \
	src/run.o \
	src/egress.o \
	src/calls.o \
	src/signature.o \
	src/events.o \
	src/workflow.o \
	src/webhook.o \
	src/inbound.o \
	src/retention.o \
	src/worker.o

DATA = ductape--0.1.0.sql ductape--0.1.0--0.2.0.sql ductape--0.2.0--0.3.0.sql

REGRESS = setup apps template run retry egress calls secrets products privileges oauth jobs webhooks events schema import workflows boundary plpgsql_check fuzz upgrade
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf \
	--temp-instance=$(CURDIR)/tmp_check_regress --load-extension=ductape

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# -Wextra minus the warnings PostgreSQL's own headers and macros trip
# (PG_FINALLY's _do_rethrow is "clobbered"; fmgr signatures leave
# parameters unused).  Variables written inside PG_TRY are volatile.
PG_CPPFLAGS = -I$(srcdir)/src
# (PG_CFLAGS reach gcc only, not the clang bitcode step.)
PG_CFLAGS = -Wall -Wextra -Werror \
	-Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare \
	-Wno-clobbered
SHLIB_LINK = -lcurl -lcrypto -lmicrohttpd -lyaml

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/ductape.h src/compat.h src/egress.h src/calls.h src/http.h \
	src/registry.h src/shmem.h

# make fuzz: the libFuzzer targets of test/fuzz/fuzz.c, built with clang
# outside the normal build into test/fuzz/ductape_fuzz.so; scripts/fuzz runs
# them.
FUZZ_CC = clang
FUZZ_DIR = test/fuzz/build
FUZZ_OBJS = $(patsubst src/%.o,$(FUZZ_DIR)/%.o,$(OBJS)) $(FUZZ_DIR)/fuzz.o
FUZZ_CFLAGS = -g -O1 -fPIC -fsanitize=fuzzer-no-link -DDT_FUZZ \
	-Wall -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-ignored-attributes -Wno-compound-token-split-by-macro \
	-I$(srcdir)/src -I$(includedir_server) -D_GNU_SOURCE
FUZZ_RT = $(shell $(FUZZ_CC) -print-resource-dir)/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a

fuzz: test/fuzz/ductape_fuzz.so

$(FUZZ_DIR)/%.o: src/%.c src/ductape.h src/compat.h src/egress.h src/calls.h src/http.h \
		src/registry.h src/shmem.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz.o: test/fuzz/fuzz.c src/ductape.h src/calls.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

test/fuzz/ductape_fuzz.so: $(FUZZ_OBJS)
	$(FUZZ_CC) -shared -fsanitize=fuzzer-no-link -Wl,-Bsymbolic -o $@ $(FUZZ_OBJS) \
		-Wl,--whole-archive $(FUZZ_RT) -Wl,--no-whole-archive \
		$(SHLIB_LINK) -lstdc++ -lm

.PHONY: fuzz
EXTRA_CLEAN += $(FUZZ_DIR) test/fuzz/ductape_fuzz.so
