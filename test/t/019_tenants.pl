# Tenants keep deliveries apart under load: 1,000 messages for tenant B and
# a few for tenant A, published together; A's endpoint receives A's only,
# B's receives every one of B's, and no delivery pairs a message of one
# tenant with the endpoint of the other (counted by the test server, per
# endpoint header, and in ductape.deliveries).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;

my $api = api_url();

my $node = ductape_node('tenants', '');

# poll($sql, $want, $secs) in database postgres: see DuctapeTest::poll_until
sub poll { return poll_until($node, 'postgres', @_); }
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql('CREATE EXTENSION ductape');

# both subscribe to everything: only the tenant keeps them apart
my $ep_a = sql(qq{SELECT ductape.endpoint_create('$api/echo/tenant-a', '{*}',
	headers => '{"X-Test-Key": "tn19-a"}', tenant => 'tenant-a')});
my $ep_b = sql(qq{SELECT ductape.endpoint_create('$api/echo/tenant-b', '{*}',
	headers => '{"X-Test-Key": "tn19-b"}', tenant => 'tenant-b')});
my ($n_a, $n_b) = (7, 1000);

# interleaved: A's few among B's many, in one transaction each
# (every 143rd of 1,007 is A's: 7 of them)
sql(qq{SELECT count(ductape.publish('order.created', jsonb_build_object('n', i),
	tenant => CASE WHEN i % 143 = 0 THEN 'tenant-a' ELSE 'tenant-b' END))
	FROM generate_series(1, $n_a + $n_b) i});
is(sql("SELECT tenant || ':' || count(*) FROM ductape.messages GROUP BY tenant ORDER BY tenant"),
	"tenant-a:$n_a\ntenant-b:$n_b", 'published: 7 for A, 1000 for B');
is(sql("SELECT count(*) FROM ductape.outbox"), $n_a + $n_b, 'one outbox row per message');

ok(poll("SELECT count(*) FILTER (WHERE state = 'succeeded') FROM ductape.outbox", $n_a + $n_b, 60),
	'every delivery succeeded');

my $count_a = sql("SELECT (ductape.http('GET', '$api/count/tn19-a')->'body'->>'count')::int");
my $count_b = sql("SELECT (ductape.http('GET', '$api/count/tn19-b')->'body'->>'count')::int");
is($count_a, $n_a, "A's endpoint received A's $n_a messages and none of B's");
is($count_b, $n_b, "B's endpoint received all $n_b of B's messages");

is(sql(qq{
SELECT count(*) FROM ductape.deliveries d JOIN ductape.messages m ON m.id = d.message_id
 WHERE (m.tenant = 'tenant-b' AND d.endpoint_id = $ep_a) OR (m.tenant = 'tenant-a' AND d.endpoint_id = $ep_b)}),
	'0', 'no delivery of a message of one tenant to the endpoint of the other');
is(sql(qq{
SELECT count(*) FROM ductape.deliveries d JOIN ductape.messages m ON m.id = d.message_id
 WHERE d.succeeded AND (d.response::jsonb->>'body')::jsonb IS DISTINCT FROM m.payload}),
	'0', 'every delivery carried its own message');

# a message published for A again after B's flood goes to A only
my $late = sql("SELECT ductape.publish('order.late', '{}', tenant => 'tenant-a')");
ok(poll("SELECT count(*) FROM ductape.outbox WHERE message_id = '$late' AND state = 'succeeded'", '1', 20),
	'a later message for A is delivered');
is(sql("SELECT string_agg(endpoint_id::text, ',') FROM ductape.outbox WHERE message_id = '$late'"),
	$ep_a, "to A's endpoint alone");

$node->stop;
done_testing();
