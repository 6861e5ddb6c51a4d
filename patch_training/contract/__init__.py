"""The run contract: what crosses a stage boundary, each part owned by one module here.

- `checkpoint`: how a model checkpoint is opened (config, vocabulary, params, identity);
- `layout`: where a run writes (stage dirs, eval dirs, the cache, the manifest of its models);
- `records`: what an eval result holds.

Import the modules themselves; this package re-exports nothing, so each name has one home.
"""
