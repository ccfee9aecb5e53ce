# pg_dump / pg_restore keep what users define: apps and actions, products,
# credentials, secrets (still encrypted in the dump, still opened by the same
# master key), OAuth tokens, webhook URLs and subscriptions, endpoints and
# their secrets, workflows; ids handed out after the restore do not collide.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;

my $api = api_url();

my $node = ductape_node('dump', qq{
ductape.webhook_listen = '127.0.0.1:0'
ductape.webhook_database = 'postgres'
});

my $plain = 'sk_live_dump_' . int(rand(1e9));
$node->poll_query_until('postgres', "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'") or die;
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "shop", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "bearer", "token": "\$Secret{API}"},
  "constants": {"v": "1"},
  "actions": [{"tag": "echo", "method": "GET", "resource": "/echo/x", "input": {"properties": {"n": {"type": "integer"}}}}],
  "webhooks": [{"tag": "hooks", "verify": {"scheme": "standard", "secret": "\$Secret{HOOK}"}}]}');
SELECT ductape.secret_set('API', '$plain');
SELECT ductape.secret_set('HOOK', 'whsec_dGVzdHNlY3JldA==');
SELECT ductape.product_create('acme', 'Acme', '{dev,prd}');
SELECT ductape.webhook_subscribe('shop', 'hooks', '*', 'pg_catalog.jsonb_typeof(jsonb)');
SELECT ductape.webhook_url('shop', 'hooks');
SELECT ductape.endpoint_create('$api/echo/hook', '{order.*}');
SELECT ductape.workflow_define('{"tag": "w", "steps": [{"tag": "a", "type": "sleep", "seconds": 1}]}');
});
my $export = $node->safe_psql('postgres', "SELECT ductape.app_export('shop')");
my $endpoint_secret = $node->safe_psql('postgres', 'SELECT ductape.endpoint_secret(1)');
my $url = $node->safe_psql('postgres', "SELECT ductape.webhook_url('shop', 'hooks')");

my $dump = $node->basedir . '/postgres.dump';
# (uncompressed, so that searching it for the plaintext means something)
command_ok(['pg_dump', '-Fc', '-Z', '0', '-f', $dump, '-d', $node->connstr('postgres')], 'pg_dump of a database using ductape');
open(my $fh, '<:raw', $dump) or die "cannot read $dump: $!";
my $bytes = do { local $/; <$fh> };
close($fh);
like($bytes, qr/ductape\.app_define|shop/, 'the dump is readable (uncompressed)');
unlike($bytes, qr/\Q$plain\E/, 'the dump does not hold the secret in plaintext');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
command_ok(['pg_restore', '-d', $node->connstr('dst'), $dump], 'pg_restore into a new database');

is($node->safe_psql('dst', "SELECT ductape.app_export('shop')"), $export, 'the app and its actions are back as they were');
is($node->safe_psql('dst', "SELECT ductape.secret_get('API')"), $plain, 'the secret opens with the same master key');
is($node->safe_psql('dst', "SELECT ductape.run('shop', 'echo', '{\"n\": 1}')->'headers'->>'authorization'"),
	"Bearer $plain", 'an action uses the restored secret');
is($node->safe_psql('dst', "SELECT string_agg(tag, ',' ORDER BY tag) FROM ductape.products"), 'acme,default',
	'products are back (the default one once)');
is($node->safe_psql('dst', "SELECT ductape.endpoint_secret(1)"), $endpoint_secret, 'the endpoint secret opens');
like($url, qr/\Q${\ $node->safe_psql('dst', "SELECT token FROM ductape._webhook_tokens")}\E\z/,
	'the webhook URL token is back (the URL the provider has keeps working)');
is($node->safe_psql('dst', "SELECT count(*) FROM ductape.webhook_subscriptions"), '1', 'the subscription is back');
is($node->safe_psql('dst', "SELECT tag FROM ductape.workflows"), 'w', 'the workflow is back');
is($node->safe_psql('dst', "SELECT ductape.endpoint_create('$api/echo/hook2', '{order.*}')"), '2',
	'a new endpoint gets the next id');
is($node->safe_psql('dst', "SELECT ductape.webhook_subscribe('shop', 'hooks', 'x.*', 'pg_catalog.jsonb_typeof(jsonb)')"), '2',
	'a new subscription gets the next id');
is($node->safe_psql('dst', "SELECT count(*) FROM ductape.jobs"), '0', 'queues are not dumped');
# ductape.calls comes back partitioned; its day partitions are members of
# the extension, so the dump holds none of them (no CREATE TABLE to collide
# with the partitions the restored database's worker makes) and no call
# records: the worker makes today's and stores the new calls there.
unlike($bytes, qr/calls_[0-9]{8}/, 'the dump holds no day partition of ductape.calls');
is($node->safe_psql('dst', "SELECT relkind FROM pg_class WHERE oid = 'ductape.calls'::regclass"), 'p',
	'ductape.calls is back, partitioned');
ok(poll_until($node, 'dst', "SELECT count(*) > 0 FROM ductape.calls WHERE app = 'shop'", 't'),
	'the restored database stores call records');

# Roles granted before an update keep their privileges through a dump and
# restore: an upgrade script's grants are recorded as initial privileges,
# which pg_dump leaves out, unless the script forgets them again.
$node->safe_psql('postgres', q{
CREATE ROLE app_user; CREATE ROLE app_admin;
CREATE DATABASE old_install;
});
$node->safe_psql('old_install', q{
CREATE EXTENSION ductape VERSION '0.1.0';
SELECT ductape.grant_usage('app_user');
SELECT ductape.grant_admin('app_admin');
ALTER EXTENSION ductape UPDATE;
});
my $rights = q{SELECT has_function_privilege('app_user', 'ductape.run(text, text, jsonb, text, text, jsonb)', 'EXECUTE'),
	has_function_privilege('app_admin', 'ductape.app_define(jsonb)', 'EXECUTE'),
	has_table_privilege('app_admin', 'ductape.apps', 'INSERT'),
	has_function_privilege('app_user', 'ductape.app_define(jsonb)', 'EXECUTE')};
is($node->safe_psql('old_install', $rights), 't|t|t|f', 'roles granted under 0.1.0 have their rights after the update');
my $old_dump = $node->basedir . '/old_install.dump';
command_ok(['pg_dump', '-Fc', '-f', $old_dump, '-d', $node->connstr('old_install')], 'pg_dump of the updated database');
$node->safe_psql('postgres', 'CREATE DATABASE old_restored');
command_ok(['pg_restore', '-d', $node->connstr('old_restored'), $old_dump], 'pg_restore of it');
is($node->safe_psql('old_restored', $rights), 't|t|t|f', 'and the same rights after the restore');
# (each database with ductape has a worker: leave the slots to what follows)
$node->safe_psql('postgres', 'DROP DATABASE old_install');
$node->safe_psql('postgres', 'DROP DATABASE old_restored');

# A dump of a database still at 0.2.0, restored where the library is this
# version: pg_dump names no version, so the restore makes a fresh install
# and then applies the dump's grants -- those 0.2.0's grant_admin gave,
# among them INSERT, UPDATE and DELETE on the tables that say whom code runs
# as, which this version takes back on ALTER EXTENSION UPDATE.  Row security
# keeps them from meaning anything: an admin cannot make a workflow's sql
# steps, or a webhook handler, run as the superuser.
$node->safe_psql('postgres', q{
CREATE DATABASE old020;
CREATE ROLE dump_adm;
});
$node->safe_psql('old020', q{
CREATE EXTENSION ductape VERSION '0.2.0';
SELECT ductape.grant_admin('dump_adm');
});
my $old_dump = $node->basedir . '/old020.dump';
command_ok(['pg_dump', '-Fc', '-f', $old_dump, '-d', $node->connstr('old020')], 'pg_dump of a 0.2.0 database');
$node->safe_psql('postgres', 'CREATE DATABASE from020');
# The dump also grants functions whose signatures 0.3.0 changed (a tenant
# argument for endpoint_create and publish, and their check): those GRANTs
# fail, nothing else does, and grant_admin run again gives the new ones
# (CHANGELOG, "Upgrading from 0.2.0").
my (undef, $restore_err) = run_command(['pg_restore', '-d', $node->connstr('from020'), $old_dump]);
is(join("\n", $restore_err =~ /ERROR:\s+(.*)/g), join("\n",
		'function ductape._endpoint_check(text, text[], jsonb) does not exist',
		'function ductape.endpoint_create(text, text[], text, text, jsonb) does not exist',
		'function ductape.publish(text, jsonb, text) does not exist'),
	'pg_restore where the library is newer: only the grants of the signatures 0.3.0 replaced fail');
is($node->safe_psql('from020', "SELECT extversion FROM pg_extension WHERE extname = 'ductape'"), '0.3.0',
	'the restore made the current version');
$node->safe_psql('from020', "SELECT ductape.grant_admin('dump_adm')");
is($node->safe_psql('from020', q{SELECT
	has_function_privilege('dump_adm', 'ductape.endpoint_create(text, text[], text, text, jsonb, text, integer)', 'EXECUTE'),
	has_function_privilege('dump_adm', 'ductape.endpoint_update(bigint, text, text[], text, jsonb, integer)', 'EXECUTE'),
	has_function_privilege('dump_adm', 'ductape.publish(text, jsonb, text, text)', 'EXECUTE')}),
	't|t|t', 'grant_admin run again gives the new signatures');
# 0.2.0's grant of UPDATE on some columns of ductape.endpoints comes back
# with the dump, and changes nothing: row security
my $ep020 = $node->safe_psql('from020', "SELECT ductape.endpoint_create('$api/echo/from020')");
is($node->safe_psql('from020', "SELECT has_column_privilege('dump_adm', 'ductape.endpoints', 'headers', 'UPDATE')"),
	't', 'the dump gave back the column UPDATE on endpoints');
$node->safe_psql('from020', qq{SET ROLE dump_adm;
UPDATE ductape.endpoints SET headers = '{"webhook-signature": "v1,forged"}', url = 'http://10.1.2.3/' WHERE id = $ep020});
is($node->safe_psql('from020', "SELECT headers::text || ' ' || (url LIKE '%/echo/from020') FROM ductape.endpoints WHERE id = $ep020"),
	'{} true', 'and an UPDATE through it changes nothing');
my $superuser = $node->safe_psql('from020', 'SELECT current_user');
$node->safe_psql('from020', q{
SET ROLE dump_adm;
SELECT ductape.workflow_define('{"tag": "who", "steps": [{"tag": "s", "type": "sql", "sql": "SELECT current_user::text AS who"}], "output": "$Step{s}{who}"}');
});
my ($ret, $out, $err) = $node->psql('from020', qq{
SET ROLE dump_adm;
UPDATE ductape.workflows SET role = '$superuser' WHERE tag = 'who';
SELECT role FROM ductape.workflows WHERE tag = 'who';
});
is($out, 'dump_adm', 'an admin cannot rewrite who a workflow\'s sql steps run as');
my $run = $node->safe_psql('from020', q{SET ROLE dump_adm; SELECT ductape.workflow_start('who')});
ok(poll_until($node, 'from020', "SELECT state FROM ductape.workflow_runs WHERE id = $run", 'completed', 20), 'the run completes');
is($node->safe_psql('from020', "SELECT output #>> '{}' FROM ductape.workflow_runs WHERE id = $run"), 'dump_adm',
	'its sql step ran as the admin who defined it');
$node->safe_psql('from020', q{SELECT ductape.app_define('{"tag": "shop", "webhooks": [{"tag": "hooks", "verify": {"scheme": "none"}}]}')});
($ret, $out, $err) = $node->psql('from020', qq{
SET ROLE dump_adm;
INSERT INTO ductape.webhook_subscriptions (app, webhook, event_type, handler, role)
VALUES ('shop', 'hooks', '*', 'pg_catalog.jsonb_typeof(jsonb)', '$superuser');
});
like($err, qr/new row violates row-level security policy for table "webhook_subscriptions"/, 'nor subscribe a handler as the superuser');

$node->stop;
done_testing();
