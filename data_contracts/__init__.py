"""Data contracts: Great Expectations suites, checkpoint runner, quarantine."""
