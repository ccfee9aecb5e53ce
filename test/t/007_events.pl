# Outbound events survive crashes: kill -9 of the worker with deliveries in
# flight, then an immediate shutdown; every message ends delivered, none is
# stuck, and a repeat carries the same webhook-id.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Time::HiRes qw(time usleep);

my $api = api_url();

my $node = ductape_node('events', qq{
restart_after_crash = on
});

# poll($sql, $want, $secs) in database postgres: see DuctapeTest::poll_until
sub poll { return poll_until($node, 'postgres', @_); }

$node->safe_psql('postgres', 'CREATE EXTENSION ductape');

sub round
{
	my ($tag, $crash) = @_;
	my $n = 2000;
	my $ep = $node->safe_psql('postgres',
		"SELECT ductape.endpoint_create('$api/delay/100', '{$tag.*}', headers => '{\"X-Test-Key\": \"ev-$tag\"}')");
	$node->safe_psql('postgres',
		"SELECT count(ductape.publish('$tag.event', jsonb_build_object('n', i))) FROM generate_series(1, $n) i");
	ok(poll("SELECT count(*) > 100 FROM ductape.outbox WHERE endpoint_id = $ep AND state = 'succeeded'", 't', 30),
		"$tag: deliveries under way");
	my $left = $node->safe_psql('postgres',
		"SELECT count(*) FROM ductape.outbox WHERE endpoint_id = $ep AND state <> 'succeeded'");
	cmp_ok($left, '>', 200, "$tag: deliveries still to do at the crash: $left");
	$crash->();
	ok(poll("SELECT count(*) FROM ductape.outbox WHERE endpoint_id = $ep AND state = 'succeeded'", "$n", 120),
		"$tag: every message ended delivered");
	is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.outbox WHERE endpoint_id = $ep AND state <> 'succeeded'"),
		'0', "$tag: none lost or stuck in delivering");
	my $sent = $node->safe_psql('postgres', "SELECT (ductape.http('GET', '$api/count/ev-$tag')->'body'->>'count')::int");
	cmp_ok($sent, '>=', $n, "$tag: the endpoint received every message ($sent requests)");
	cmp_ok($sent - $n, '<=', 64, "$tag: repeats only for deliveries in flight at the crash (at most 64)");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM ductape.deliveries
 WHERE endpoint_id = $ep AND succeeded AND response::jsonb->'headers'->>'webhook-id' IS DISTINCT FROM message_id}),
		'0', "$tag: every delivery carried its message's webhook-id");
	diag("$tag: " . ($sent - $n) . " of $n messages were sent twice");
}

round('kill', sub {
	ok(kill_worker($node), 'kill: the server recovered from kill -9 of the worker');
});
round('stop', sub {
	$node->stop('immediate');
	$node->start;
});

$node->stop;
done_testing();
