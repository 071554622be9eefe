#!/usr/bin/env bash
# Asks questions about the compressed example corpus, from the CLI and from SQL.
# Usage: examples/demo_questions.sh BIN DB [EXTENSION]
set -euo pipefail
bin=$1 db=$2 ext=${3:-}

ask() { # doc mode question
    echo "== [$2] $1: $3"
    "$bin" ask --db "$db" --doc "$1" --mode "$2" --json "$3" |
        python3 -c "$show"
}
# The answer, the sentence of the document that holds it (check an answer without one), and timings.
show='
import json, sys
a = json.load(sys.stdin)
print("   ->", a["answer"])
e = a.get("evidence")
where = "" if e and e["read"] else ", not in the prompt"
print("      evidence (chunk %d%s): %s" % (e["chunk"], where, e["sentence"]) if e else "      no evidence: no sentence of the document holds these words")
r = a.get("replaced_answer")
if r:
    print("      copied from the text: the decoder answered %r, with a word the text it read lacks" % r)
if a.get("second_hop"):
    print("      second hop: the first answer had no support in the text read; this one read chunks %s" % a["chunks"])
if a.get("refocused"):
    print("      refocused: the first answer stood in one of several like facts; this one read chunk %s alone" % a["chunks"])
if a.get("compared"):
    print("      compared: the option whose year the document gives first or last, as the question asks")
if a.get("gathered"):
    print("      gathered: %d answers, each read from one like fact" % len(a["gathered"]))
print("      (%d prompt tokens, first token %.0f ms, total %.0f ms)" % (a["prompt_tokens"], a["ttft_ms"], a["total_ms"]))
'


ask 1941-Roosevelt-1.txt rag "Which Congress is Roosevelt addressing?"
ask 1941-Roosevelt-1.txt rag "What is the first of the four essential human freedoms?"
ask 1823-Monroe-1.txt rag "Which European power did the United States negotiate with over the northwest coast of the continent?"
ask 1961-Kennedy-1.txt rag "What did Kennedy say about the space program?"
ask 1790-Washington-1.txt full "Who is being addressed?"
# The E2LLM modes: one soft token per 128-token chunk (compressed), plus the top-k raw chunks (hybrid).
ask 1941-Roosevelt-1.txt compressed "What is the first of the four essential human freedoms?"
ask 1941-Roosevelt-1.txt hybrid "What is the first of the four essential human freedoms?"
# RCC: each chunk's per-layer memory (keys and values of every 32nd token) in the decoder's KV cache.
ask 1941-Roosevelt-1.txt rcc "What is the first of the four essential human freedoms?"

if [ -n "$ext" ]; then
    echo "== SQL: SELECT doc_id, e2llm_ask(doc_id, ...) FROM documents"
    sqlite3 "$db" <<SQL
.load $ext
SELECT e2llm_version();
SELECT doc_id, e2llm_ask(doc_id, 'Who is being addressed?', '{"mode":"rag","max_new_tokens":16}')
FROM documents WHERE doc_id IN ('1941-Roosevelt-1.txt', '2002-Bush-1.txt');
-- The answer with its evidence: the sentence of the document that holds it (NULL where none does).
SELECT doc_id, json_extract(a, '$.answer'), coalesce(json_extract(a, '$.evidence.sentence'), '(no evidence)')
FROM (SELECT doc_id, e2llm_ask_json(doc_id, 'What is the first of the four essential human freedoms?') AS a
      FROM documents WHERE doc_id = '1941-Roosevelt-1.txt');
SQL
fi
