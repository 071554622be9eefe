"""Datasette plugin: every connection Datasette opens gets e2llm's SQL functions.

    pip install 'e2llm[datasette]'
    datasette docs.db --setting sql_time_limit_ms 120000

then run ``select e2llm_ask(doc_id, 'What are the four freedoms?') from documents`` in the browser.
Datasette stops queries after 1 s by default; a first answer loads the models (about 1.5 s on 2 cores),
hence the longer limit.
"""

from __future__ import annotations

import logging
import sqlite3

from datasette import hookimpl

import e2llm

_log = logging.getLogger("e2llm")


@hookimpl
def prepare_connection(conn: sqlite3.Connection) -> None:
    try:
        e2llm.load(conn)
    except e2llm.ModelsNotFound as missing:  # the functions are there; each call will say what is missing
        _log.warning("%s", missing)
    except e2llm.E2llmError as unable:  # this Python cannot load extensions: Datasette runs without e2llm
        _log.warning("e2llm not loaded: %s", unable)
