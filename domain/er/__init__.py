"""Entity resolution: resolutions, merge decisions, embedding jobs."""
