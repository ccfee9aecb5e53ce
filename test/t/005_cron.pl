# Recurring calls through pg_cron (the README recipe): a cron job that
# dispatches; its jobs run.  pg_cron 1.4 (Debian 12) schedules by the
# minute, so this waits up to about a minute.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $api_port = $ENV{DUCTAPE_API_PORT} or die "DUCTAPE_API_PORT is not set";
my $api = "http://127.0.0.1:$api_port";

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,ductape'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
ductape.allowed_hosts = '127.0.0.1'
});
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION pg_cron;
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "crm", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "sync", "method": "POST", "resource": "/echo/sync"}]}');
});
is($node->safe_psql('postgres', q{
SELECT cron.schedule('crm-sync', '* * * * *',
                     $$SELECT ductape.dispatch('crm', 'sync', '{"from": "cron"}')$$) > 0}),
	't', 'the recipe schedules a dispatch');
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 1 FROM ductape.jobs WHERE input->>'from' = 'cron' AND state = 'succeeded'"),
	'pg_cron dispatched a job and the worker ran it');
is($node->safe_psql('postgres', q{SELECT response->'body'->>'path' FROM ductape.jobs WHERE input->>'from' = 'cron' LIMIT 1}),
	'/echo/sync', 'the API received the scheduled call');
$node->safe_psql('postgres', q{SELECT cron.unschedule('crm-sync')});
$node->stop;
done_testing();
