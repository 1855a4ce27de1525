"""SQL plumbing shared by read models, and throwaway PostgreSQL clusters."""
