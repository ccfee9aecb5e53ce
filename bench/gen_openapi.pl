#!/usr/bin/perl
# bench/gen_openapi.pl N: prints a synthetic OpenAPI 3.0 JSON document with N
# resources, each a component schema (12 properties, one $ref to a shared
# schema) and six operations (list with 3 query parameters, create with a
# $ref'd body, get, replace, update, delete); N = 800 is about 5.2 MB.
use strict;
use warnings;
use JSON::PP;

my $n = shift // 800;
my $words = 'the quick brown fox jumps over the lazy dog while the API returns a paginated list ' x 3;
my (%paths, %schemas);
$schemas{Meta} = {type => 'object', properties => {created => {type => 'string', format => 'date-time'},
                                                  labels => {type => 'object', additionalProperties => {type => 'string'}}}};
for my $i (1 .. $n)
{
	my $r = "Resource$i";
	my %props = map { ("field_$_" => {type => ($_ % 3 ? 'string' : 'integer'), description => "Field $_ of $r: $words",
	                                  ($_ % 3 ? (maxLength => 200) : (minimum => 0))}) } 1 .. 10;
	$props{status} = {type => 'string', enum => [qw(active paused archived)]};
	$props{meta} = {'$ref' => '#/components/schemas/Meta'};
	$schemas{$r} = {type => 'object', required => ['field_1', 'status'], properties => \%props, description => "A $r. $words"};
	my $body = {required => JSON::PP::true, content => {'application/json' => {schema => {'$ref' => "#/components/schemas/$r"}}}};
	my $id = [{name => 'id', in => 'path', required => JSON::PP::true, schema => {type => 'string'}}];
	$paths{"/resources$i"} = {
		get => {operationId => "list$r", summary => "List $r", description => $words,
		        parameters => [map { {name => $_, in => 'query', schema => {type => 'integer', minimum => 0}} } qw(limit offset page)]},
		post => {operationId => "create$r", summary => "Create $r", description => $words, requestBody => $body}};
	$paths{"/resources$i/{id}"} = {
		parameters => $id,
		get => {operationId => "get$r", summary => "Get $r", description => $words},
		put => {operationId => "replace$r", summary => "Replace $r", description => $words, requestBody => $body},
		patch => {operationId => "update$r", summary => "Update $r", description => $words, requestBody => $body},
		delete => {operationId => "delete$r", summary => "Delete $r", description => $words}};
}
print JSON::PP->new->canonical->encode({
	openapi => '3.0.3', info => {title => 'Bench API', version => '1'},
	servers => [{url => 'https://api.example.com/v1'}],
	components => {schemas => \%schemas, securitySchemes => {key => {type => 'apiKey', in => 'header', name => 'X-Api-Key'}}},
	paths => \%paths}), "\n";
