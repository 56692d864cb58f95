"""Demo service for canary tests: the HTTP app and its bounded load generator."""
