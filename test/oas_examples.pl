#!/usr/bin/perl
# Prints the OpenAPI 3.0 and 3.1 example documents of the npm package
# @readme/oas-examples 8.2.2 (MIT, vendored in test/data) as one JSON
# object: {"3.0/yaml/petstore.yaml": "<the document's text>", ...}.
use strict;
use warnings;
use File::Basename;
use JSON::PP;

my $tgz = dirname($0) . '/data/oas-examples-8.2.2.tgz';
my @files = sort grep { m{^package/3\.[01]/(json|yaml)/[^/]+\.(json|yaml)$} } split /\n/, `tar -tzf $tgz`;
my %docs;
for my $f (@files)
{
	my $text = `tar -xzOf $tgz $f`;
	die "tar failed for $f" if $?;
	utf8::decode($text);
	(my $name = $f) =~ s{^package/}{};
	$docs{$name} = $text;
}
print JSON::PP->new->utf8->canonical->encode(\%docs), "\n";
