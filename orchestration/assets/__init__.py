"""Asset factories, one module per lifecycle stage."""
