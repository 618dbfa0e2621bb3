"""The prediction API and dashboard: latest activity per phone, ad-hoc predictions, the registry.

Not built yet (see the prediction API issue).
"""
