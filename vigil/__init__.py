"""Vigil's shared base: settings, schema, artifact names, registry access, auth, paths,
the served-batch record, the prediction log and whylogs access.

Every component (serving, converter, monitor, lifecycle, loadtest) imports from here;
nothing here imports a component.
"""
