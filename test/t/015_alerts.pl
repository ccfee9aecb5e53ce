# Alerts: NOTIFY ductape_alerts, read by a LISTENing session of a role with
# no ductape privileges (any role can LISTEN), for each of the four kinds,
# from the real paths (the worker's write-backs, the listener, the workflow
# engine, an administrator); nothing for a change rolled back; nothing of
# the error texts or bodies a role chose; the ductape.* operational message
# delivered, signed, to an endpoint that names its type and not to "*"; and
# the chain of disabled endpoints ends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

my $api = api_url();
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = ductape_node('alerts', qq{
ductape.webhook_listen = '127.0.0.1:$port'
});

sub sql { return $node->safe_psql('postgres', @_); }
sub poll { return poll_until($node, 'postgres', @_); }

sql(qq{
CREATE EXTENSION ductape;
CREATE ROLE dt_app LOGIN;
CREATE ROLE dt_stranger LOGIN;
CREATE ROLE dt_admin;
SELECT ductape.grant_usage('dt_app');
SELECT ductape.grant_admin('dt_admin');
SELECT ductape.app_define('{"tag": "al", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "fail", "method": "POST", "resource": "/status/500"}],
  "webhooks": [{"tag": "in", "verify": {"scheme": "none"}, "id": "\$Event{id}", "type": "\$Event{type}"}]}');
});

# The listener: psql as a role without any ductape privilege.  psql prints
# the notifications that arrived after each statement it runs, so each read
# runs a marker statement and takes what came before the marker.
my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout(60);
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres') . ' user=dt_stranger' ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);
my $tick = 0;

sub listener_run
{
	my ($sql) = @_;
	$tick++;
	$in .= "$sql\nSELECT 'tick-$tick';\n";
	$timer->start(60);
	$listener->pump until $out =~ /^tick-$tick$/m;
}
listener_run('LISTEN ductape_alerts;');
is($err, '', 'a role with no ductape privilege can LISTEN on ductape_alerts');

my @seen;	# every alert received, in order

# The alerts that arrived since the last read, decoded.
sub read_alerts
{
	listener_run('');
	my @new;
	while ($out =~ s/^Asynchronous notification "ductape_alerts" with payload "(.*)" received from server process with PID \d+\.\n//m)
	{
		my $raw = $1;
		cmp_ok(length($raw), '<', 8000, 'the payload stays under 8000 bytes');
		push @new, { raw => $raw, %{ decode_json($raw) } };
	}
	$out =~ s/^.*\n//mg;	# markers and command tags
	push @seen, @new;
	return @new;
}

# Wait (up to $secs) for an alert of $kind about object $id; returns it.
sub wait_alert
{
	my ($kind, $id, $secs) = @_;
	my $deadline = time + ($secs // 30);
	while (time < $deadline)
	{
		read_alerts();
		my ($a) = grep { $_->{kind} eq $kind && $_->{object}{id} == $id } @seen;
		return $a if $a;
		usleep(100_000);
	}
	diag("no $kind alert for $id; seen: " . join(', ', map { $_->{raw} } @seen));
	return undef;
}

sub alerts_about
{
	my ($kind, $id) = @_;
	read_alerts();
	return scalar grep { $_->{kind} eq $kind && $_->{object}{id} == $id } @seen;
}

# Endpoints: the operations team's (job failures), everything of the team
# ("*"), and one for other events.
my $ep_ops = sql("SELECT ductape.endpoint_create('$api/echo/ops', '{ductape.job.failed}', headers => '{\"X-Test-Key\": \"al-ops\"}')");
my $ep_all = sql("SELECT ductape.endpoint_create('$api/echo/all', '{*}', headers => '{\"X-Test-Key\": \"al-all\"}')");

# ---- job.failed: the worker's write-back, as the bootstrap superuser ----
my $job = sql(q{SET ROLE dt_app;
SELECT ductape.dispatch('al', 'fail', '{"note": "job-marker-5d1"}', options => '{"retries": {"max": 0}}')});
is(sql("SELECT ductape.wait($job, '20 s')->>'state'"), 'failed', 'the job failed for good');
my $a = wait_alert('job.failed', $job);
ok($a, 'job.failed alerted');
is_deeply([ sort keys %$a ], [ sort qw(raw kind object reason at database) ], 'the payload: kind, object, reason, at, database');
is_deeply($a->{object}, { type => 'job', id => $job }, 'object: the job');
is($a->{reason}, 'HTTP 500 after 1 attempt', 'reason: the status and the attempts, nothing else');
is($a->{database}, 'postgres', 'database');
ok(sql("SELECT '$a->{at}'::timestamptz BETWEEN now() - interval '1 minute' AND now()"), 'at: when');
unlike($a->{raw}, qr/marker/, 'nothing of the input or response the role chose');

# the operational message: to ep_ops, signed; not to "*"
ok(poll(qq{SELECT count(*) FROM ductape.outbox o JOIN ductape.messages m ON m.id = o.message_id
 WHERE m.event_type = 'ductape.job.failed' AND (m.payload->'object'->>'id')::bigint = $job
   AND o.endpoint_id = $ep_ops AND o.state = 'succeeded'}, '1'),
	'ductape.job.failed was delivered to the endpoint subscribed to it');
is(sql(qq{SELECT r->'headers'->>'webhook-signature' = ductape._signature_standard(ductape.endpoint_secret($ep_ops),
           d.message_id, (r->'headers'->>'webhook-timestamp')::bigint, r->>'body')
         AND (r->>'body')::jsonb->'object' = '{"type": "job", "id": $job}'
  FROM ductape.deliveries d JOIN ductape.messages m ON m.id = d.message_id, LATERAL (SELECT d.response::jsonb AS r) x
 WHERE d.endpoint_id = $ep_ops AND m.event_type = 'ductape.job.failed'}), 't',
	'signed with the endpoint\'s secret, the alert as its body');

# ---- webhook_event.failed: the worker's handler rounds ----
sql(q{
CREATE FUNCTION public.bad_handler(e jsonb) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'handler-marker-2b7: %', e->'payload'->>'data'; END $$;
SELECT ductape.webhook_subscribe('al', 'in', '*', 'public.bad_handler(jsonb)');
});
my $url = sql("SELECT ductape.webhook_url('al', 'in')");
is(sql(qq{SELECT ductape.http('POST', '$url', body => '{"id": "ev-1", "type": "x.y", "data": "payload-marker-c40"}')->'status'}),
	'200', 'an inbound event was accepted');
my $ev = sql("SELECT id FROM ductape.webhook_events WHERE event_id = 'ev-1'");
ok(poll("SELECT attempts >= 1 FROM ductape.webhook_events WHERE id = $ev", 't'), 'its handler ran and failed');
# the last of its rounds, now rather than in hours
sql("UPDATE ductape.webhook_events SET attempts = 7, next_attempt_at = now() WHERE id = $ev");
ok(poll("SELECT state FROM ductape.webhook_events WHERE id = $ev", 'failed'), 'the event failed for good');
$a = wait_alert('webhook_event.failed', $ev);
ok($a, 'webhook_event.failed alerted');
is_deeply($a->{object}, { type => 'webhook_event', id => $ev }, 'object: the event');
is($a->{reason}, 'handlers failed 8 times', 'reason: how many rounds');
unlike($a->{raw}, qr/marker/, 'nothing of the payload or the handler\'s error');

# ---- workflow.failed: the workflow engine ----
sql(q{SELECT ductape.workflow_define('{"tag": "wf", "steps": [{"tag": "s", "type": "action", "app": "al",
  "action": "fail", "retries": {"max": 0}}]}')});
my $run = sql("SET ROLE dt_app; SELECT ductape.workflow_start('wf')");
ok(poll("SELECT state FROM ductape.workflow_runs WHERE id = $run", 'rolled_back'), 'the run was rolled back');
$a = wait_alert('workflow.failed', $run);
ok($a, 'workflow.failed alerted');
is_deeply($a->{object}, { type => 'workflow_run', id => $run }, 'object: the run');
is($a->{reason}, 'a step failed; rolled back', 'reason');
my $step_job = sql("SELECT max(id) FROM ductape.jobs WHERE app = 'al' AND id > $job");
ok(wait_alert('job.failed', $step_job), 'and the step\'s job alerted job.failed');

# ---- endpoint.disabled: 410 Gone (the worker), an administrator ----
my $ep_gone = sql("SELECT ductape.endpoint_create('$api/status/410', '{x.*}')");
sql("SET ROLE dt_app; SELECT ductape.publish('x.gone', '{}')");
ok(poll("SELECT enabled FROM ductape.endpoints WHERE id = $ep_gone", 'f'), 'an endpoint answering 410 was disabled');
$a = wait_alert('endpoint.disabled', $ep_gone);
ok($a, 'endpoint.disabled alerted');
is_deeply($a->{object}, { type => 'endpoint', id => $ep_gone }, 'object: the endpoint');
is($a->{reason}, 'answered 410 Gone', 'reason: 410');
unlike($a->{raw}, qr/status|127\.0\.0\.1/, 'nothing of its URL');

my $ep_x = sql("SELECT ductape.endpoint_create('$api/echo/x', '{x.*}')");
# rolled back: nothing, whoever made the change
sql("BEGIN; SELECT ductape.endpoint_disable($ep_x); ROLLBACK;");
sql("BEGIN; UPDATE ductape.jobs SET state = 'queued' WHERE id = $job; UPDATE ductape.jobs SET state = 'failed' WHERE id = $job; ROLLBACK;");
sql("SET ROLE dt_admin; SELECT ductape.endpoint_disable($ep_x)");
is(sql("SELECT disabled_reason FROM ductape.endpoints WHERE id = $ep_x"), 'disabled by dt_admin',
	'(the endpoint records who disabled it)');
$a = wait_alert('endpoint.disabled', $ep_x);
is($a->{reason}, 'disabled by an administrator', 'endpoint_disable alerts, reason: an administrator');
is(alerts_about('endpoint.disabled', $ep_x), 1, 'the rolled back disable alerted nobody');
is(alerts_about('job.failed', $job), 1, 'nor did the rolled back job failure');
unlike($a->{raw}, qr/dt_admin/, 'the payload does not name the administrator');

# "*" received no operational message of all of these
is(sql(qq{SELECT count(*) FROM ductape.outbox o JOIN ductape.messages m ON m.id = o.message_id
 WHERE o.endpoint_id = $ep_all AND m.event_type LIKE 'ductape.%'}), '0',
	'the endpoint subscribed to "*" received no operational message');
is(sql(qq{SELECT count(*) FROM ductape.outbox o JOIN ductape.messages m ON m.id = o.message_id
 WHERE o.endpoint_id = $ep_all AND m.event_type = 'x.gone'}), '1', '(but the team\'s own x.gone)');

# ---- the chain ends: endpoints subscribed to ductape.* that answer 410 ----
# Each is disabled once, and a disabled endpoint receives nothing, so the
# endpoint.disabled messages stop after at most one per endpoint.
sql("DELETE FROM ductape.messages WHERE event_type LIKE 'ductape.%'");
my @g = map { sql("SELECT ductape.endpoint_create('$api/status/410', '{ductape.*}')") } 1 .. 3;
sql("SELECT ductape.endpoint_enable($ep_x)");
sql("SELECT ductape.endpoint_disable($ep_x)");
ok(poll("SELECT bool_and(NOT enabled) FROM ductape.endpoints WHERE id IN (" . join(',', @g) . ")", 't'),
	'every ductape.* endpoint answering 410 was disabled');
ok(poll("SELECT count(*) FROM ductape.outbox WHERE state IN ('pending', 'delivering') AND endpoint_id IN (" . join(',', @g) . ")", '0'),
	'nothing left to deliver to them');
sleep 2;
my $msgs = sql("SELECT count(*) FROM ductape.messages WHERE event_type LIKE 'ductape.%'");
cmp_ok($msgs, '<=', 1 + scalar @g, "the chain ended: $msgs operational messages for " . scalar(@g) . " endpoints");
is(sql("SELECT count(*) FROM ductape.messages WHERE event_type LIKE 'ductape.%'"), $msgs, 'and no more came');
ok(wait_alert('endpoint.disabled', $_), "endpoint $_ alerted once disabled") for @g;

$listener->finish;
$node->stop;
done_testing();
