//! Retrieval for rag and hybrid: a one-sentence needle inside a long document is found by the lexical
//! and fused rankings, whatever the depth, and kept alone by a relevance floor; a weak answer to a
//! two-hop question is read again from a second hop that finds the fact sharing only a name with the
//! first (in paragraphs about one subject each; in running text the hop tends to find the best chunk's
//! neighbours instead, see reports/answer_rules.md); an answer read off one of several like facts is read
//! again from the fact the question asks about, and a question for all of something gathers the answers
//! of every like fact read; a question of which of two came first is answered by the years the document
//! gives them; the options are accepted from SQL and rejected when unknown.

mod common;

use e2llm::{AskOptions, Mode, Retrieval};

#[test]
fn needles_are_retrieved_at_every_depth() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let haystack = std::fs::read_to_string(common::examples_dir().join("1941-Roosevelt-1.txt")).unwrap();
    let paragraphs: Vec<&str> = haystack.split("\n\n").filter(|p| !p.trim().is_empty()).collect();
    let needle = "The harbour lighthouse of Trondheim is painted ochre and has 417 steps.";
    let mut inputs = Vec::new();
    for depth in [0.0, 0.5, 1.0] {
        let mut parts = paragraphs.clone();
        parts.insert((depth * parts.len() as f64).round() as usize, needle);
        let path = dir.path().join(format!("needle-{depth}.txt"));
        std::fs::write(&path, parts.join("\n\n")).unwrap();
        inputs.push(path);
    }
    e2llm::compress::compress(engine, e2llm::compress::Target::Database(&mut store), &inputs, &Default::default())
        .unwrap();
    let reader = store.reader();
    let question = "How many steps does the harbour lighthouse of Trondheim have?";
    for input in &inputs {
        let doc = input.to_string_lossy();
        let chunks = reader.chunks(&reader.document(&doc).unwrap()).unwrap();
        assert!(chunks.texts.len() > 20, "the haystack is long enough to need retrieval");
        let holding: Vec<usize> = (0..chunks.texts.len()).filter(|&i| chunks.texts[i].contains("417 steps")).collect();
        for retrieval in [Retrieval::Lexical, Retrieval::Fused] {
            let options = AskOptions {
                mode: Mode::Rag,
                max_new_tokens: 1,
                top_k: 2,
                retrieval,
                min_relevance: 0.0,
                // The first retrieval's choice is what this test checks.
                second_hop: false,
                ..Default::default()
            };
            let answer = engine.ask(&reader, &doc, question, &options).unwrap();
            assert_eq!(answer.chunks.len(), 2);
            assert!(
                answer.chunks.iter().any(|c| holding.contains(c)),
                "{retrieval:?} missed the needle in {doc}: chose {:?}, needle in {holding:?}",
                answer.chunks
            );
            // The speech shares no rare term with the question: a relevance floor leaves the needle alone.
            let focused = AskOptions { min_relevance: 0.5, ..options };
            let answer = engine.ask(&reader, &doc, question, &focused).unwrap();
            assert!(
                !answer.chunks.is_empty() && answer.chunks.iter().all(|c| holding.contains(c)),
                "{retrieval:?} with min_relevance 0.5 chose {:?}, needle in {holding:?}",
                answer.chunks
            );
        }
    }
}

/// Paragraphs about one subject each, as in HotpotQA's contexts (the second hop was chosen there).
const ENCYCLOPEDIA: [&str; 12] = [
    "Night Harbour is a 1958 Norwegian drama film directed by Erik Solberg. The film starred Ada Lindqvist as \
     a lighthouse keeper's daughter who waits for her brother to return from the sea. It was shot on the coast \
     near Trondheim and opened the Oslo film festival.",
    "The Vistula is the longest river in Poland, flowing some 1,047 kilometres from the Beskids to the Baltic \
     Sea at Gdansk. Its basin covers more than half of the country.",
    "Marie Curie was a physicist and chemist who conducted pioneering research on radioactivity. She was the \
     first woman to win a Nobel Prize and the only person to win it in two sciences.",
    "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 individual reefs \
     off the coast of Queensland, Australia. It can be seen from outer space.",
    "Johann Sebastian Bach was a German composer of the Baroque period, known for the Brandenburg Concertos, \
     the Mass in B minor and the Goldberg Variations. He worked in Leipzig for 27 years.",
    "The Andes are the longest continental mountain range in the world, stretching along the western edge of \
     South America through seven countries, from Venezuela to Argentina.",
    "Ada Lindqvist (1931-2004) was a Norwegian actress of stage and screen. Lindqvist was born in the fishing \
     town of Kolvereid and trained at the National Theatre school in Oslo before her first screen role.",
    "The Rosetta Stone is a granodiorite stele inscribed with a decree issued in Memphis in 196 BC. Its three \
     scripts were the key to deciphering Egyptian hieroglyphs.",
    "Kraków was the capital of Poland until 1596. Its old town, with the Wawel castle and the market square, \
     was among the first sites on the UNESCO World Heritage list.",
    "The tuatara is a reptile endemic to New Zealand. Although it resembles most lizards, it is part of a \
     distinct lineage, the order Rhynchocephalia.",
    "Ernest Rutherford was a New Zealand physicist who discovered the atomic nucleus in 1911, by firing alpha \
     particles at a thin sheet of gold foil in Manchester.",
    "The Trans-Siberian Railway connects Moscow with Vladivostok on the Sea of Japan. At 9,289 kilometres it \
     is the longest railway line in the world.",
];

#[test]
fn a_weak_answer_is_read_again_from_a_second_hop() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    // The film and its star, far apart, share only her name; the question names the film, not her.
    let path = dir.path().join("two-hop.txt");
    std::fs::write(&path, ENCYCLOPEDIA.join("\n\n")).unwrap();
    e2llm::compress::compress(
        engine,
        e2llm::compress::Target::Database(&mut store),
        std::slice::from_ref(&path),
        &Default::default(),
    )
    .unwrap();
    let reader = store.reader();
    let doc = path.to_string_lossy();
    let chunks = reader.chunks(&reader.document(&doc).unwrap()).unwrap();
    let holding = |words: &str| (0..chunks.texts.len()).find(|&i| chunks.texts[i].contains(words)).unwrap();
    let (film_chunk, star_chunk) = (holding("The film starred Ada"), holding("born in the fishing"));
    assert_ne!(film_chunk, star_chunk);
    let question = "What is the birthplace of the star of the film Night Harbour?";
    // No answer token at all: an empty answer quotes nothing, the weakest answer there is.
    let options = AskOptions { mode: Mode::Rag, max_new_tokens: 0, ..Default::default() };
    let one_hop = engine.ask(&reader, &doc, question, &AskOptions { second_hop: false, ..options.clone() }).unwrap();
    assert!(!one_hop.second_hop);
    assert!(one_hop.chunks.contains(&film_chunk) && !one_hop.chunks.contains(&star_chunk), "{:?}", one_hop.chunks);
    let two_hops = engine.ask(&reader, &doc, question, &options).unwrap();
    assert!(two_hops.second_hop, "an empty answer is read again: {:?} then {:?}", one_hop.chunks, two_hops.chunks);
    assert!(
        two_hops.chunks.contains(&film_chunk) && two_hops.chunks.contains(&star_chunk),
        "the second hop reads both: {:?} (film {film_chunk}, star {star_chunk})",
        two_hops.chunks
    );
    // Compressed reads no retrieved text: no second hop whatever the answer.
    let compressed = AskOptions { mode: Mode::Compressed, ..options };
    assert!(!engine.ask(&reader, &doc, question, &compressed).unwrap().second_hop);
}

/// The Roosevelt address with `facts` placed between its paragraphs, evenly apart, compressed into a
/// fresh store in `dir`: the document id.
fn address_with(dir: &std::path::Path, store: &mut e2llm::store::Store, facts: &[String]) -> String {
    let address = std::fs::read_to_string(common::examples_dir().join("1941-Roosevelt-1.txt")).unwrap();
    let mut parts: Vec<String> = address.split("\n\n").filter(|p| !p.trim().is_empty()).map(str::to_string).collect();
    let step = parts.len() / (facts.len() + 1);
    for (i, fact) in facts.iter().enumerate().rev() {
        parts.insert((i + 1) * step, fact.clone());
    }
    let path = dir.join("facts.txt");
    std::fs::write(&path, parts.join("\n\n")).unwrap();
    e2llm::compress::compress(
        common::engine(),
        e2llm::compress::Target::Database(store),
        std::slice::from_ref(&path),
        &Default::default(),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn an_answer_read_off_another_like_fact_is_read_again_from_the_one_asked_about() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let facts: Vec<(&str, &str)> = vec![("Hobart", "425"), ("Mombasa", "607"), ("Galway", "183"), ("Cusco", "569")];
    let sentences: Vec<String> = facts
        .iter()
        .map(|(city, steps)| format!("The harbour lighthouse of {city} is painted ochre and has {steps} steps."))
        .collect();
    let doc = address_with(dir.path(), &mut store, &sentences);
    let reader = store.reader();
    let chunks = reader.chunks(&reader.document(&doc).unwrap()).unwrap();
    let mut refocused = 0;
    for (city, steps) in &facts {
        let question = format!("How many steps does the harbour lighthouse of {city} have?");
        let answer = engine.ask(&reader, &doc, &question, &AskOptions::default()).unwrap();
        // All four facts share the question's words but the city: all are read, one is asked about.
        assert!(answer.answer.contains(steps), "{city}: {} (refocused {})", answer.answer, answer.refocused);
        if answer.refocused {
            refocused += 1;
            assert_eq!(answer.chunks.len(), 1, "read again from one chunk: {:?}", answer.chunks);
            assert!(chunks.texts[answer.chunks[0]].contains(&format!("of {city} ")), "{:?}", answer.chunks);
        }
        let off = AskOptions { refocus: false, ..Default::default() };
        assert!(!engine.ask(&reader, &doc, &question, &off).unwrap().refocused);
    }
    eprintln!("{refocused} of {} answers read again from the fact asked about", facts.len());
}

#[test]
fn a_question_for_all_of_something_gathers_every_like_fact_read() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let numbers = ["6915", "2390", "2500"];
    let sentences: Vec<String> =
        numbers.iter().map(|n| format!("The archive of Mombasa keeps a ledger numbered {n}.")).collect();
    let doc = address_with(dir.path(), &mut store, &sentences);
    let reader = store.reader();
    let question = "What are all the ledger numbers the archive of Mombasa keeps?";
    for mode in [Mode::Rag, Mode::Hybrid] {
        let answer = engine.ask(&reader, &doc, question, &AskOptions { mode, ..Default::default() }).unwrap();
        assert_eq!(answer.gathered.len(), 3, "{mode:?}: {:?}", answer.gathered);
        for n in numbers {
            assert!(answer.answer.contains(n), "{mode:?}: {n} missing from {}", answer.answer);
        }
        assert_eq!(answer.answer, answer.gathered.join(", "));
        let one = AskOptions { mode, gather: false, ..Default::default() };
        let answer = engine.ask(&reader, &doc, question, &one).unwrap();
        assert!(answer.gathered.is_empty() && numbers.iter().filter(|n| answer.answer.contains(*n)).count() == 1);
    }
    // A question that asks for one of them is answered with one.
    let answer =
        engine.ask(&reader, &doc, "Which ledger number does the archive of Mombasa keep?", &Default::default());
    assert!(answer.unwrap().gathered.is_empty());

    // Two of the facts in one paragraph (one chunk): read whole, the chunk gives one answer; the other
    // fact's sentence is read alone.
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let together = vec![format!("{} {}", sentences[0], sentences[1]), sentences[2].clone()];
    let doc = address_with(dir.path(), &mut store, &together);
    let reader = store.reader();
    let answer = engine.ask(&reader, &doc, question, &AskOptions::default()).unwrap();
    assert_eq!(answer.gathered.len(), 3, "{:?}", answer.gathered);
    assert!(numbers.iter().all(|n| answer.answer.contains(n)), "{}", answer.answer);
}

#[test]
fn which_came_first_is_answered_by_the_years_the_document_gives() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let facts = [
        "Mary Collins (born 24 March 1961) is a British actress who starred in a 1990 film.".to_string(),
        "Polly Draper (born June 15, 1955) is an American actress and writer.".to_string(),
    ];
    let doc = address_with(dir.path(), &mut store, &facts);
    let reader = store.reader();
    let options = AskOptions { mode: Mode::Rag, max_new_tokens: 8, ..Default::default() };
    for (question, expected, sentence) in [
        ("Who was born first, Mary Collins or Polly Draper?", "Polly Draper", &facts[1]),
        ("Who is younger, Mary Collins or Polly Draper?", "Mary Collins", &facts[0]),
    ] {
        for mode in [Mode::Rag, Mode::Hybrid, Mode::Full] {
            let answer = engine.ask(&reader, &doc, question, &AskOptions { mode, ..options.clone() }).unwrap();
            assert!(answer.compared, "{mode:?}: {question}");
            assert_eq!(answer.answer, expected, "{mode:?}: {question}");
            assert_eq!(&answer.evidence.unwrap().sentence, sentence);
        }
    }
    // Off, in a mode that reads no text, and for a question of another kind: the decoder's answer.
    let question = "Who was born first, Mary Collins or Polly Draper?";
    let off = AskOptions { compare_years: false, ..options.clone() };
    assert!(!engine.ask(&reader, &doc, question, &off).unwrap().compared);
    let compressed = AskOptions { mode: Mode::Compressed, ..options.clone() };
    assert!(!engine.ask(&reader, &doc, question, &compressed).unwrap().compared);
    let other = "Who wrote more books, Mary Collins or Polly Draper?";
    assert!(!engine.ask(&reader, &doc, other, &options).unwrap().compared);
}

#[test]
fn refocus_gather_and_compare_years_options_from_sql() {
    for key in ["refocus", "gather", "compare_years"] {
        let off = e2llm::sql::parse_options(Some(&format!(r#"{{"{key}": false}}"#))).unwrap();
        let on = match key {
            "refocus" => off.refocus,
            "gather" => off.gather,
            _ => off.compare_years,
        };
        assert!(!on, "{key}");
        let message = e2llm::sql::parse_options(Some(&format!(r#"{{"{key}": 2}}"#))).unwrap_err().to_string();
        assert!(message.contains(key), "{message}");
    }
    let defaults = e2llm::sql::parse_options(None).unwrap();
    assert!(defaults.refocus && defaults.gather && defaults.compare_years, "on by default");
}

#[test]
fn second_hop_option_from_sql() {
    assert!(e2llm::sql::parse_options(None).unwrap().second_hop, "on by default");
    assert!(!e2llm::sql::parse_options(Some(r#"{"second_hop": false}"#)).unwrap().second_hop);
    let message = e2llm::sql::parse_options(Some(r#"{"second_hop": "twice"}"#)).unwrap_err().to_string();
    assert!(message.contains("second_hop"), "{message}");
}

#[test]
fn retrieval_option_from_sql() {
    let options = e2llm::sql::parse_options(Some(r#"{"mode": "hybrid", "retrieval": "lexical"}"#)).unwrap();
    assert_eq!(options.retrieval, Retrieval::Lexical);
    assert_eq!(e2llm::sql::parse_options(None).unwrap().retrieval, e2llm::ask::DEFAULT_RETRIEVAL);
    for bad in [r#"{"retrieval": "psychic"}"#, r#"{"retrieval": 3}"#] {
        let message = e2llm::sql::parse_options(Some(bad)).unwrap_err().to_string();
        assert!(message.contains("retrieval"), "{bad}: {message}");
    }
}
