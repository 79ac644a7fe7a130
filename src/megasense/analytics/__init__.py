"""Corpus analysis: topics, sentiment over time and per group, stored as SQL tables, a report and a dashboard.

Analytics never loads a model by itself at import: ``TopicModel`` and ``analyze`` take an embedder
and a sentiment scorer as objects (see ``protocols``), and ``analyze`` loads the defaults only when
it is given none.
"""

from megasense.analytics.analysis import AnalysisResult, AnalyzeOptions, analyze
from megasense.analytics.topics import Topic, TopicModel

__all__ = ["AnalysisResult", "AnalyzeOptions", "Topic", "TopicModel", "analyze"]
