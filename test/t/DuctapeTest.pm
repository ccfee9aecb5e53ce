# Helpers shared by ductape's TAP tests (test/t/*.pl).
package DuctapeTest;

use strict;
use warnings;
use Exporter 'import';
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(poll_until);

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

1;
