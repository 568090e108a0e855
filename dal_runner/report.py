"""dal-report: scan run folders and summarise them (placeholder replaced by the report issue)."""
