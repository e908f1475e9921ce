"""The identity dataset: generate (tutorial, varied), validate, statistics, write.

Cheap to import: no torch/transformers here (the tokenizer for statistics loads lazily).
"""

from engine.data.generate import (
    DEFAULT_N,
    STYLES,
    DatasetBundle,
    IdentityFacts,
    WriteResult,
    build_dataset,
    dumps_dataset,
    generate_tutorial,
    generate_varied,
    heldout_path_for,
    record_choice,
    write_dataset,
)
from engine.data.stats import DataStats, dataset_stats, load_tokenizer
from engine.data.validate import Problem, ValidationReport, load_conversations, validate_file

__all__ = [
    "DEFAULT_N",
    "STYLES",
    "DataStats",
    "DatasetBundle",
    "IdentityFacts",
    "Problem",
    "ValidationReport",
    "WriteResult",
    "build_dataset",
    "dataset_stats",
    "dumps_dataset",
    "generate_tutorial",
    "generate_varied",
    "heldout_path_for",
    "load_conversations",
    "load_tokenizer",
    "record_choice",
    "validate_file",
    "write_dataset",
]
