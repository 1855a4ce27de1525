"""GraphQL over the same application services and read models as REST."""
