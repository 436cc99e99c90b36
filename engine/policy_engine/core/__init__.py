"""The pure core: policy sets, effective rules, bucketing, routes, guardrail windows, diffs.

Everything here is a function of loaded data and the time it is handed: no files, network,
clock, YAML, metrics or brokers. Importing any module of this package loads none of yaml, httpx,
prometheus_client, watchfiles or redis (``tests/core/test_core_purity.py`` checks it, and ruff's
banned-api rule, configured in this folder's ``ruff.toml``, keeps it so). The edges (the YAML
loader, the schema sources, the engine facade, metrics, the loop, the CLI) build on it.

- ``policy_set``: ``PolicySet`` and ``PolicyEntry``, the loaded rules and how a name matches them;
- ``resolve``: ``EffectiveRule``, one (schema, track)'s rule with inheritance applied;
- ``bucket``: the canary bucket of a key (murmur3, the same in every process and language);
- ``route``: ``Route`` and ``ModeLimits``, the one mode pipeline (rule -> canary -> key -> bucket
  -> guardrail -> adjusters -> force cap) that evaluation, ``resolve_mode`` and ``explain`` share;
- ``guardrail``: sliding windows of strict rejections and the trips they cause;
- ``diff``: what a policy change does, per schema/track, and its ratchet warnings.

This ``__init__`` imports nothing, so importing one module does not import the others.
"""
