"""Public data sets: the catalog (`catalog`) and verified, resumable downloads into the cache (`download`)."""
