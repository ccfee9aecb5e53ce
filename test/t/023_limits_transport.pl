# More attacks on flow control, from a second hostile review (each seen
# failing before its fix):
#  L. a job finishing while the worker fetches an OAuth2 token (a
#     synchronous request on the same libcurl handle, DriverPerform): its
#     "done" message was dropped, the job stayed running and its slot taken;
#  B2. two definitions differing in anything (here max_wait_ms) with
#     burst > 1: each switch refilled the bucket (25 requests through 5);
#  S. after a slow request held the only slot for 6 s, the backlog put back
#     meanwhile drained at about one a second.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $api = api_url();
my $node = ductape_node('review4');
sub sql { return $node->safe_psql('postgres', @_); }
sub count_at_api { return sql("SELECT ductape.http('GET', '$api/count/$_[0]')->'body'->>'count'"); }
sql(qq{
CREATE EXTENSION ductape;
CREATE ROLE u1 LOGIN; SELECT ductape.grant_usage('u1');
SELECT ductape.http('POST', '$api/oauth/reset');
SELECT ductape.http('GET', '$api/reset');
SELECT ductape.secret_set('SF_SECRET', 's3cret/client:1');
SELECT ductape.app_define('{"tag": "sf", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "oauth2", "token_url": "$api/oauth/token?delay_ms=3000",
           "client_id": "ductape-client", "client_secret": "\$Secret{SF_SECRET}"},
  "actions": [{"tag": "res", "method": "GET", "resource": "/oauth/resource"}]}');
SELECT ductape.app_define('{"tag": "slow", "envs": [{"slug": "dev", "base_url": "$api"}],
  "limits": {"concurrency": 1},
  "actions": [{"tag": "delay", "method": "GET", "resource": "/delay/:ms"}]}');
SELECT ductape.app_define('{"tag": "bb", "envs": [{"slug": "dev", "base_url": "$api"}],
  "limits": {"rate": 1, "per": "1m", "burst": 5, "max_wait_ms": 0},
  "actions": [{"tag": "ok", "method": "GET", "resource": "/echo/bb", "headers": {"X-Test-Key": "bb-k"}}]}');
SELECT ductape.app_define('{"tag": "dr", "envs": [{"slug": "dev", "base_url": "$api"}],
  "limits": {"concurrency": 1},
  "actions": [{"tag": "fast", "method": "GET", "resource": "/echo/dr"},
              {"tag": "slow", "method": "GET", "resource": "/delay/6000"}]}');
});

# ---- L
my $job = sql(q{SELECT ductape.dispatch('slow', 'delay', '{"ms": 1000}')});
ok(poll_until($node, 'postgres',
	"SELECT in_flight FROM ductape.limits WHERE app = 'slow'", '1', 10), 'L: job in flight');
is(sql(q{SELECT ductape.run('sf', 'res')->>'path'}), '/oauth/resource', 'L: token call done (3 s)');
is(sql("SELECT ductape.wait($job, '8 s')->>'state'"), 'succeeded',
	'L: the job that finished during the token request succeeded');
is(sql("SELECT in_flight FROM ductape.limits WHERE app = 'slow'"), '0', 'L: its slot was given back');

# ---- B2
my ($in1, $o1, $in2, $o2) = ('', '', '', '');
my @psql = ('psql', '-X', '-At', '-v', 'ON_ERROR_ROLLBACK=on', '-d', $node->connstr('postgres') . ' user=u1');
my $s1 = IPC::Run::start([@psql], '<', \$in1, '>', \$o1, '2>', \$o1);
my $s2 = IPC::Run::start([@psql], '<', \$in2, '>', \$o2, '2>', \$o2);
$in1 .= "BEGIN ISOLATION LEVEL REPEATABLE READ;\n";
for my $i (1 .. 5)
{
	$in1 .= "SELECT 'go:' || (ductape.run('bb', 'ok')->>'path');\n";
}
$in1 .= "\\echo s1-0\n";
$s1->pump until $o1 =~ /s1-0/ or !$s1->pumpable;
sql(q{SELECT ductape.app_define(jsonb_set(ductape.app_export('bb'), '{limits,max_wait_ms}', '1'))});
for my $i (1 .. 10)
{
	$in2 .= "SELECT 'go:' || (ductape.run('bb', 'ok')->>'path');\n\\echo s2-$i\n";
	$s2->pump until $o2 =~ /s2-$i/ or !$s2->pumpable;
	$in1 .= "SELECT 'go:' || (ductape.run('bb', 'ok')->>'path');\n\\echo s1-$i\n";
	$s1->pump until $o1 =~ /s1-$i/ or !$s1->pumpable;
}
$in1 .= "COMMIT;\n\\q\n";
$in2 .= "\\q\n";
$s1->finish;
$s2->finish;
my $n = () = $o1 =~ /go:/g;
diag("B2: s1 went $n times, s2 " . (() = $o2 =~ /go:/g));
cmp_ok(count_at_api('bb-k'), '<=', 6, 'B2: at most burst (5) + 1 requests within seconds at 1/min');

# ---- S
sql("SELECT count(ductape.dispatch('dr', 'fast')) FROM generate_series(1, 20)");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.jobs WHERE app = 'dr' AND state = 'succeeded'", '20'),
	'S: fast requests teach a small mean');
my $t0 = time;
my $slow = sql(q{SELECT ductape.dispatch('dr', 'slow', options => '{"timeout_ms": 20000, "retries": {"max": 0}}')});
usleep(500_000);
sql("SELECT count(ductape.dispatch('dr', 'fast')) FROM generate_series(1, 60)");
is(sql("SELECT ductape.wait($slow, '15 s')->>'state'"), 'succeeded', 'S: the slow one ended');
my $t1 = time;
usleep(5_000_000);
my $done5 = sql("SELECT count(*) FROM ductape.jobs WHERE app = 'dr' AND state = 'succeeded'") - 21;
my $at_end = sql("SELECT count(*) FROM ductape.jobs WHERE app = 'dr' AND state = 'succeeded' AND finished_at <= (SELECT finished_at FROM ductape.jobs WHERE id = $slow)") - 21;
my $done = $done5;
diag(sprintf("S: slow ended %.1f s after dispatch (%d fast ones done by then); 5 s later %d of 60 fast ones succeeded; furthest due %s",
	$t1 - $t0, $at_end, $done, sql("SELECT max(next_attempt_at) - now() FROM ductape.jobs WHERE app = 'dr' AND state = 'queued'")));
cmp_ok($done, '>=', 55, 'S: the backlog drains within 5 s once the slot is free');
poll_until($node, 'postgres', "SELECT count(*) FROM ductape.jobs WHERE app = 'dr' AND state = 'succeeded'", '81', 120);
diag(sprintf("S: all 60 done %.1f s after the slow one ended", time - $t1));

$node->stop;
done_testing();
