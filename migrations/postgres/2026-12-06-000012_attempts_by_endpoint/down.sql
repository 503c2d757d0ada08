DROP INDEX attempts_endpoint;
