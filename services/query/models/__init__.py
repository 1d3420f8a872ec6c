"""Request and response schemas of the search API (the OpenAPI contract), one module per resource."""
