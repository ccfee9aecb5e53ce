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
	src/template.o \
	src/catalog.o \
	src/request.o \
	src/schema.o \
	src/import.o \
	src/secrets.o \
	src/oauth.o \
	src/jobs.o \
	src/http.o \
	src/egress.o \
	src/calls.o \
	src/signature.o \
	src/events.o \
	src/workflow.o \
	src/webhook.o \
	src/worker.o

DATA = ductape--0.1.0.sql

REGRESS = setup apps template run retry egress calls secrets products privileges oauth jobs webhooks events schema import workflows
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

$(OBJS): src/ductape.h src/compat.h src/egress.h src/calls.h
