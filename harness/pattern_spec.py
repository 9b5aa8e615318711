"""Kept so that existing imports keep working: the `[pattern]` options live in
harness.patterns.options, with the patterns."""

from harness.patterns.options import (  # noqa: F401
    MAX_GROUPS,
    MAX_NAMED,
    QUALITY_ROUTES,
    SHARE_SUM_TOLERANCE,
    TRANSFORMATIONS,
    VALIDATIONS,
    BranchingOptions,
    MapOptions,
    NestedMapOptions,
    PatternOptions,
    PipelineOptions,
    SchemaField,
    Step,
    SubflowsOptions,
    pattern_options,
)
