"""The federated catalog: crawl the members' DSP catalogs into a local search index."""
