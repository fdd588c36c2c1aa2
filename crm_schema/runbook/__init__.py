"""The seed's runbook as code: pre-flight, verification, rollback, partition maintenance,
monitoring and the migration log. Each step returns a :class:`~crm_schema.runbook.report.Report`
that the CLI prints as text or JSON."""
