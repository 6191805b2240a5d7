"""Everything that scores: HTTP app, schemas, scorer, triage policy, crisis detection, batch scoring."""
