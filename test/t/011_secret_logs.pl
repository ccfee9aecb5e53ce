# Secrets and the server log.  With the default log_min_error_statement =
# error, PostgreSQL logs the statement of every error: a secret_set(...) or
# oauth_set_tokens(...) that fails would write the secret it carries into
# the log.  Each call below fails in its own way (bad arguments, a key file
# that cannot be used, a lock timeout, a PL/pgSQL caller, a terminated
# session) with the plaintext in its statement; the whole server log is
# then searched for the plaintext and its percent-encoding.  Each error
# still reaches the client with its SQLSTATE and message, and is still
# logged (without its statement).
#
# Then what log_statement = 'all' shows, which no function can hide since
# the statement is logged before it runs: literals (psql variables too) in
# full, bind parameters in full by default (log_parameter_max_length = -1),
# and bind parameters not at all with log_parameter_max_length = 0; 'mod'
# logs no SELECT; log_min_duration_statement logs literals too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;

my $api = api_url();
my $run = int(rand(1e9));
# "/", "+" and "=" change under percent-encoding
my $plain = "Pl41n/s3cr3t+$run=x";

my $node = ductape_node('secret_logs', q{
log_min_error_statement = error
log_statement = 'none'
lock_timeout = '60s'
});
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "oa", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "oauth2", "token_url": "$api/oauth/token", "client_id": "ductape-client",
           "client_secret": "s3cret/client:1"},
  "actions": [{"tag": "res", "method": "GET", "resource": "/oauth/resource"}]}');
SELECT ductape.app_define('{"tag": "nooauth", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "x", "method": "GET", "resource": "/echo"}]}');
SELECT ductape.secret_set('LOCKED', 'locked-value');
SELECT ductape.oauth_set_tokens('oa', 'at-locked');
});

# Run $sql, which must fail; the client must get $state and $msg.
sub fails_with
{
	my ($name, $sql, $state, $msg) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($ret, 0, "$name: fails");
	like($err, qr/ERROR:  $state: \Q$msg\E/, "$name: the client gets $state \"$msg\"");
}

# ---- secret_set ----
fails_with('secret_set with a bad name',
	"SELECT ductape.secret_set('bad name', '$plain')",
	'22023', 'invalid secret name "bad name"');
fails_with('secret_set with a NULL name',
	"SELECT ductape.secret_set(NULL, '$plain')",
	'22004', 'a secret needs a name and a value');
fails_with('secret_set with bad apps',
	"SELECT ductape.secret_set('K', '$plain', apps => '{Bad App}')",
	'22023', 'invalid apps entry "Bad App"');
fails_with('secret_set with bad envs',
	"SELECT ductape.secret_set('K', '$plain', envs => '{dev, \"\"}')",
	'22023', 'invalid envs entry ""');
fails_with('secret_set with a past expires_at',
	"SELECT ductape.secret_set('K', '$plain', 'd', expires_at => now() - interval '1 day')",
	'22023', 'expires_at ');
fails_with('secret_set in PL/pgSQL (the CONTEXT quotes the call)',
	"DO \$\$ BEGIN PERFORM ductape.secret_set('bad name', '$plain'); END \$\$",
	'22023', 'invalid secret name "bad name"');

# An error that is not about the arguments: a key file others can read.
my $keyfile = $node->data_dir . '/ductape_master.key';
chmod 0604, $keyfile;
fails_with('secret_set with a key file it refuses',
	"SELECT ductape.secret_set('K', '$plain')",
	'DT003', 'ductape master key file');
chmod 0600, $keyfile;

# ---- endpoint_create (the caller proxy's hiding variant) ----
fails_with('endpoint_create with a bad URL',
	"SELECT ductape.endpoint_create('not a url', secret => 'whsec_$plain')",
	'22023', 'invalid endpoint URL "not a url"');
fails_with('endpoint_create with event types that are not an array of types',
	"SELECT ductape.endpoint_create('ftp://127.0.0.1/x', '{}', 'whsec_$plain')",
	'22023', 'invalid endpoint URL "ftp://127.0.0.1/x"');

# ---- oauth_set_tokens ----
fails_with('oauth_set_tokens for an unknown app',
	"SELECT ductape.oauth_set_tokens('nope', '$plain')",
	'42704', 'app "nope" does not exist');
fails_with('oauth_set_tokens for an app without oauth2',
	"SELECT ductape.oauth_set_tokens('nooauth', '$plain', '$plain')",
	'22023', 'app "nooauth" does not use oauth2 auth');
fails_with('oauth_set_tokens with a bad env',
	"SELECT ductape.oauth_set_tokens('oa', '$plain', env => 'nope')",
	'42704', 'environment "nope" of app "oa" does not exist');
fails_with('oauth_set_tokens with a bad product',
	"SELECT ductape.oauth_set_tokens('oa', '$plain', product => 'nope')",
	'42704', 'product "nope" does not exist');
fails_with('oauth_set_tokens with a negative expires_in',
	"SELECT ductape.oauth_set_tokens('oa', '$plain', '$plain', -1)",
	'22023', 'expires_in cannot be negative');
fails_with('oauth_set_tokens with a NULL access token',
	"SELECT ductape.oauth_set_tokens('oa', NULL, '$plain')",
	'22004', 'app and access_token cannot be NULL');
fails_with('oauth_set_tokens with a line break in the token',
	"SELECT ductape.oauth_set_tokens('oa', E'$plain\\r\\nX-Injected: 1')",
	'22023', 'access_token cannot contain');

# ---- errors raised while the call waits ----
# An error raised while the call waits: a lock timeout.
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{BEGIN;
SELECT 1 FROM ductape._secrets WHERE name = 'LOCKED' FOR UPDATE;
SELECT 1 FROM ductape._oauth_tokens WHERE app = 'oa' FOR UPDATE;});
fails_with('secret_set that times out waiting for a lock',
	"SET lock_timeout = '200ms'; SELECT ductape.secret_set('LOCKED', '$plain')",
	'55P03', 'canceling statement due to lock timeout');

# A session terminated while it waits (FATAL, not ERROR).
sub terminated_while_waiting
{
	my ($name, $sql, $func) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	ok( poll_until(
			$node, 'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%$func%'",
			'1'),
		"$name: waits for the lock");
	$node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%$func%'");
	$h->finish;
	like($err, qr/FATAL:  terminating connection due to administrator command/,
		"$name: the client is told");
}
terminated_while_waiting('secret_set terminated',
	"SELECT ductape.secret_set('LOCKED', '$plain')", 'secret_set');

fails_with('oauth_set_tokens that times out waiting for a lock',
	"SET lock_timeout = '200ms'; SELECT ductape.oauth_set_tokens('oa', '$plain', '$plain', 60)",
	'55P03', 'canceling statement due to lock timeout');
terminated_while_waiting('oauth_set_tokens terminated',
	"SELECT ductape.oauth_set_tokens('oa', '$plain')", 'oauth_set_tokens');
$locker->query_safe('ROLLBACK');
$locker->quit;

# Nothing above changed a secret or a token.
is($node->safe_psql('postgres', "SELECT ductape.secret_get('LOCKED')"), 'locked-value',
	'the locked secret kept its value');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape._secrets'), '1', 'no secret was added');

# The errors are in the log, their statements are not.
my $log = slurp_file($node->logfile);
like($log, qr/ERROR:  invalid secret name "bad name"/, 'the errors are still logged');
like($log, qr/FATAL:  terminating connection due to administrator command/, 'so is the FATAL');
unlike($log, qr/STATEMENT:  .*(secret_set|oauth_set_tokens)/, 'no STATEMENT line of a secret-bearing call');
is_deeply([ secret_leaks($log, $plain) ], [], 'the plaintext is nowhere in the server log');

# ---- what log_statement = 'all' shows ----
# Reload with $conf; wait until new sessions see $setting = $value.
sub reload_with
{
	my ($conf, $setting, $value) = @_;
	$node->append_conf('postgresql.conf', $conf);
	$node->reload;
	ok(poll_until($node, 'postgres', "SHOW $setting", $value), "$setting is $value");
}

reload_with("log_statement = 'all'\n", 'log_statement', 'all');
my $offset = -s $node->logfile;

my $literal = "L1teral/$run";
$node->safe_psql('postgres', "SELECT ductape.secret_set('LS_LITERAL', '$literal')");
my $psqlvar = "Psqlv4r/$run";
$node->safe_psql('postgres', "\\set v '$psqlvar'\nSELECT ductape.secret_set('LS_PSQLVAR', :'v')");
# pgbench -M extended sends :v as a bind parameter ($1)
my $bound = "B0und/$run";
$node->pgbench("-n -t 1 -M extended -D v=$bound", 0, [qr/transactions actually processed: 1/], [],
	'secret_set with a bind parameter',
	{ '011_bind' => "SELECT ductape.secret_set('LS_BOUND', :v);\n" }, 'postgres');
# ... by a role whose log_parameter_max_length is 0
$node->safe_psql('postgres', q{
CREATE ROLE secrets_admin LOGIN;
SELECT ductape.grant_admin('secrets_admin');
ALTER ROLE secrets_admin SET log_parameter_max_length = 0;
});
my $hidden = "H1dden/$run";
$node->pgbench("-n -t 1 -M extended -D v=$hidden -U secrets_admin", 0, [qr/transactions actually processed: 1/], [],
	'secret_set with a bind parameter, log_parameter_max_length = 0',
	{ '011_bind_hidden' => "SELECT ductape.secret_set('LS_HIDDEN', :v);\n" }, 'postgres');
is($node->safe_psql('postgres',
		"SELECT string_agg(ductape.secret_get(name), ' ' ORDER BY name) FROM ductape.secrets WHERE name LIKE 'LS%'"),
	"$bound $hidden $literal $psqlvar", 'the four secrets were set');

$log = substr(slurp_file($node->logfile), $offset);
like($log, qr/LOG:  statement: SELECT ductape\.secret_set\('LS_LITERAL', '\Q$literal\E'\)/,
	"log_statement = 'all' logs a literal in full");
like($log, qr/LOG:  statement: SELECT ductape\.secret_set\('LS_PSQLVAR', '\Q$psqlvar\E'\)/,
	'psql interpolates :\'v\' into the statement: logged in full too');
like($log, qr/LOG:  execute <unnamed>: SELECT ductape\.secret_set\('LS_BOUND', \$1\);?\n.*DETAIL:  parameters: \$1 = '\Q$bound\E'/,
	'a bind parameter is logged in full by default (log_parameter_max_length = -1)');
like($log, qr/LOG:  execute <unnamed>: SELECT ductape\.secret_set\('LS_HIDDEN', \$1\);?\n/,
	'with log_parameter_max_length = 0 the statement is logged...');
is(index($log, $hidden), -1, '... but not the bind parameter');

# log_statement = 'mod' does not log a SELECT, whatever the function it
# calls does; log_min_duration_statement logs the statement as it ends.
reload_with("log_statement = 'mod'\n", 'log_statement', 'mod');
$offset = -s $node->logfile;
my $mod = "M0d/$run";
$node->safe_psql('postgres', "SELECT ductape.secret_set('LS_MOD', '$mod')");
reload_with("log_statement = 'none'\nlog_min_duration_statement = 0\n", 'log_min_duration_statement', '0');
my $duration = "Dur4tion/$run";
$node->safe_psql('postgres', "SELECT ductape.secret_set('LS_DURATION', '$duration')");
$log = substr(slurp_file($node->logfile), $offset);
is(index($log, $mod), -1, "log_statement = 'mod' does not log SELECT ductape.secret_set(...)");
like($log, qr/duration: [0-9.]+ ms  statement: SELECT ductape\.secret_set\('LS_DURATION', '\Q$duration\E'\)/,
	'log_min_duration_statement = 0 logs it in full');

$node->stop;
done_testing();
