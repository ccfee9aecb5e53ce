# Faults the database worker's queues must survive without dying, looping or
# sending anything twice: an answer whose body jsonb cannot hold, an OAuth2
# token endpoint that keeps failing (or is slow) for queued jobs, and user
# code that keeps catching its cancel in a webhook handler or a workflow
# sql step.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IO::Socket::INET;
use Time::HiRes qw(time usleep);

my $api = api_url();
my $hook_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = ductape_node('queue_faults', qq{
ductape.webhook_listen = '127.0.0.1:$hook_port'
ductape.webhook_database = 'postgres'
ductape.user_code_timeout = '1s'
max_worker_processes = 16
});

sub poll { return poll_until($node, 'postgres', @_); }

my $worker_pid = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'";
sub api_count
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT ductape.http('GET', '$api/count/$key')->'body'->>'count'");
}

$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "odd", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "num", "method": "GET", "resource": "/json", "query": {"body": "1e200000"}},
              {"tag": "deep", "method": "GET", "resource": "/nested/300000"},
              {"tag": "ok", "method": "GET", "resource": "/echo/ok"}]}');
});
ok(poll("SELECT count(*) FROM ($worker_pid) w", '1'), 'the worker runs');
my $pid = $node->safe_psql('postgres', $worker_pid);

# ---- an answer jsonb cannot hold ----
# 1e200000 is JSON, but no numeric; 300,000 nested arrays are JSON, but
# deeper than the stack.  The job fails with the reason; the worker lives
# on and sends each request once.
my ($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('odd', 'num')");
like($err, qr/value overflows numeric format/, 'run() in a session: an error, not a crash');
my $num = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'num', '{"headers:X-Test-Key": "odd-num"}')});
my $deep = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'deep', '{"headers:X-Test-Key": "odd-deep"}')});
ok(poll("SELECT count(*) FROM ductape.jobs WHERE id IN ($num, $deep) AND state IN ('succeeded', 'failed')", '2', 20),
	'jobs whose answer jsonb cannot hold end');
is($node->safe_psql('postgres', "SELECT state || ': ' || error FROM ductape.jobs WHERE id = $num"),
	'failed: value overflows numeric format', 'the job says why (a number out of range)');
like($node->safe_psql('postgres', "SELECT state || ': ' || error FROM ductape.jobs WHERE id = $deep"),
	qr/^failed: stack depth limit exceeded/, 'the job says why (nesting)');
is($node->safe_psql('postgres', "SELECT attempts FROM ductape.jobs WHERE id = $num"), '1', 'one attempt');
is(api_count('odd-num'), '1', 'the request was sent once');
is(api_count('odd-deep'), '1', 'the other too');
is($node->safe_psql('postgres', $worker_pid), $pid, 'the same worker runs (it did not die)');
my $ok = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'ok')});
is($node->safe_psql('postgres', "SELECT ductape.wait($ok, '10 s')->>'state'"), 'succeeded', 'and runs the next job');

$node->stop;
done_testing();
