"""The paper's table: experiment specs, the methods (one row each), one experiment, the grid, the teacher,
EDA, the report, the plots and the dry-run estimate.

May import: pipeline, compile, student, method, llm, data, store."""
