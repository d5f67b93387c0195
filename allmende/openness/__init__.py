"""How open is a model: evidence, licence analysis, catalog, verdicts, lineage, policy."""
