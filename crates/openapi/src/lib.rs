//! OpenAPI v2/v3 documents for the served resources.
