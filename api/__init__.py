"""The prediction API and dashboard: latest activity per phone, ad-hoc predictions, the registry."""
