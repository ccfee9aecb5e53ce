# Helpers shared by ductape's TAP tests (test/t/*.pl).
package DuctapeTest;

use strict;
use warnings;
use Exporter 'import';
use Test::More;
use PostgreSQL::Test::Cluster;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(ductape_node api_url poll_until kill_worker secret_leaks);

# A started cluster with ductape preloaded and loopback allowed (where the
# test API server lives); $extra_conf adds postgresql.conf lines.
sub ductape_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ductape'
ductape.allowed_hosts = '127.0.0.1'
} . ($extra_conf // ''));
	$node->start;
	return $node;
}

# The test API server's base URL (scripts/test starts it).
sub api_url
{
	my $port = $ENV{DUCTAPE_API_PORT} or die "DUCTAPE_API_PORT is not set";
	return "http://127.0.0.1:$port";
}

# Run $sql in database $db of $node until it returns $want; true if it did
# within $secs seconds (default 30).  Plain psql, not safe_psql: a server in
# crash recovery refuses connections for a moment, and that is waited out too.
sub poll_until
{
	my ($node, $db, $sql, $want, $secs) = @_;
	my $deadline = time + ($secs // 30);
	my $got = '';
	while (time < $deadline)
	{
		my ($ret, $out) = $node->psql($db, $sql);
		$got = $out // '';
		return 1 if $ret == 0 && $got eq $want;
		usleep(100_000);
	}
	diag("last result of $sql: $got");
	return 0;
}

# kill -9 the ductape worker of database postgres; the postmaster then
# resets every process.  True once the server answers again (within 60 s).
sub kill_worker
{
	my ($node) = @_;
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
	kill 'KILL', $pid;
	return poll_until($node, 'postgres', 'SELECT 1', '1', 60);
}

# The forms of $plain found in $text: as it is, percent-encoded (upper- and
# lower-case hex, as ductape and other clients write it) and JSON-escaped.
# An empty list means no leak.
sub secret_leaks
{
	my ($text, $plain) = @_;
	(my $upper = $plain) =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge;
	(my $lower = $plain) =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02x', ord($1))/ge;
	(my $json = $plain) =~ s/(["\\\/])/\\$1/g;
	my %forms = (plain => $plain, percent => $upper, percent_lower => $lower, json => $json);
	return grep { index($text, $forms{$_}) >= 0 } sort keys %forms;
}

1;
