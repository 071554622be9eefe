//! Questions that offer a choice ("Who was born first, Mary Collins or Polly Draper?"): their answer is
//! one of the options, and an answer that names part of one is given as the question writes it whole;
//! where the choice is which came first or last, the years the document gives each option decide.

use super::evidence::{cased_words, quoted_words, read_first, sentences, word_spans, Evidence};
use crate::decode::words;

/// True when the question offers alternatives ("Who is older, A or B?"): its answer is expected to
/// repeat words of the question.
pub(super) fn offers_choice(question: &str) -> bool {
    question.split(|c: char| !c.is_alphanumeric()).any(|word| word.eq_ignore_ascii_case("or"))
}

/// Lower-case words that may stand inside a name ("Spirit of the West", "Ride a Wild Pony", "What Ever
/// Happened to Baby Jane?", "Ludwig van Beethoven"), never at its ends.
const CONNECTORS: [&str; 19] = [
    "of", "the", "and", "a", "an", "to", "de", "del", "der", "den", "da", "di", "du", "la", "le", "van", "von", "al",
    "y",
];

/// Opening words of a question, capitalised there only because they open it.
const OPENERS: [&str; 24] = [
    "who", "what", "which", "when", "where", "why", "how", "whose", "whom", "is", "are", "was", "were", "do", "does",
    "did", "has", "have", "had", "in", "on", "of", "the", "a",
];

/// One word of the question as written (split at white space), with its byte span.
struct Word<'q> {
    text: &'q str,
    start: usize,
    end: usize,
}

impl Word<'_> {
    /// The word without the punctuation around it ("Khan?" -> "Khan", "\"Guest\"" -> "Guest").
    fn core(&self) -> &str {
        self.text.trim_matches(|c: char| !c.is_alphanumeric())
    }

    /// A capitalised word, a number or an initial: a word of a name.
    fn names(&self) -> bool {
        self.core().chars().next().is_some_and(|c| c.is_uppercase() || c.is_numeric())
    }

    fn connects(&self) -> bool {
        CONNECTORS.contains(&self.text) || self.text.starts_with("al-")
    }

    /// The word ends an option: "or", or punctuation after it that parts options (", " ": " "? ").
    fn ends_option(&self) -> bool {
        self.core().eq_ignore_ascii_case("or") || self.text.ends_with([',', ';', ':', '?', '!'])
    }
}

/// The question's words as written (split at white space), with their byte spans.
fn split(question: &str) -> Vec<Word<'_>> {
    question
        .split_whitespace()
        .map(|text| {
            let start = text.as_ptr() as usize - question.as_ptr() as usize;
            Word { text, start, end: start + text.len() }
        })
        .collect()
}

/// A word of a name: capitalised, a number or an initial, and not the question's opening word.
fn names(all: &[Word<'_>], i: usize) -> bool {
    all[i].names() && !(i == 0 && OPENERS.contains(&all[i].core().to_lowercase().as_str()))
}

/// The name that words `from..=to` of the question stand in: grown over the name words and connectors
/// beside them, within one option (never past "or" or the punctuation that ends an option), then cut to
/// name words at both ends; `None` where no name word is left.
fn name_around(all: &[Word<'_>], mut from: usize, mut to: usize) -> Option<(usize, usize)> {
    let may_join = |i: usize| names(all, i) || all[i].connects();
    while from > 0 && !all[from - 1].ends_option() && may_join(from - 1) {
        from -= 1;
    }
    while to + 1 < all.len() && !all[to].ends_option() && may_join(to + 1) {
        to += 1;
    }
    while from < to && !names(all, from) {
        from += 1;
    }
    while to > from && !names(all, to) {
        to -= 1;
    }
    names(all, from).then_some((from, to))
}

/// Words `from..=to` of the question as it writes them, without the quotes, brackets and punctuation
/// around them.
fn as_written(question: &str, all: &[Word<'_>], from: usize, to: usize) -> String {
    question[all[from].start..all[to].end]
        .trim_start_matches(['"', '\'', '“', '‘', '('])
        .trim_end_matches([',', ';', ':', '?', '!', '"', '\'', '”', '’', ')'])
        .to_string()
}

/// Where the answer names part of a name the question offers as an option ("Polly" for "Mary Collins or
/// Polly Draper?"), that name as the question writes it ("Polly Draper"); `None` when the question
/// offers no choice, or the answer is not a strict part of a capitalised name of it.
pub(super) fn whole_option(answer: &str, question: &str) -> Option<String> {
    if !offers_choice(question) {
        return None;
    }
    let wanted = words(answer);
    if wanted.trim().is_empty() {
        return None;
    }
    let all = split(question);
    let names = |i: usize| names(&all, i);
    // The answer's words, whole words of the question in a row, each a word of a name.
    for first in 0..all.len() {
        let mut last = first;
        while last + 1 < all.len() && words(&question[all[first].start..all[last].end]).len() < wanted.len() {
            last += 1;
        }
        if words(&question[all[first].start..all[last].end]) != wanted {
            continue;
        }
        if !names(first) || !names(last) || (first..last).any(|i| all[i].ends_option()) {
            continue;
        }
        // The whole name, within the option.
        let (from, to) = name_around(&all, first, last)?;
        if (from, to) == (first, last) {
            return None;
        }
        return Some(as_written(question, &all, from, to));
    }
    None
}

/// Which of two options a question asks for, by the years the document gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// The one that came first: "Who was born first, A or B?", "Which is older, A or B?".
    Earlier,
    /// The one that came last: "Which film is more recent, A or B?", "Who is younger, A or B?".
    Later,
}

/// Words that ask for the option that came first, or last, where they stand next to the options (the
/// word before them, or the question's last word: "Which band formed first, A or B?", "Was A or B formed
/// first?"). Fixed before measuring, not tuned.
const EARLIER: [&str; 7] = ["first", "earlier", "earliest", "older", "oldest", "elder", "before"];
const LATER: [&str; 8] = ["later", "latest", "younger", "youngest", "recent", "recently", "newer", "last"];
/// Words that make the first year given of an option the wrong one to compare (it is a birth or a
/// founding, and the question asks about an end).
const ENDINGS: [&str; 9] = ["die", "died", "dies", "death", "end", "ended", "closed", "dissolved", "disbanded"];

/// The two options of a question that asks which came first or last, with the order asked for: names
/// the question writes on either side of an "or" ("Who was born first, Mary Collins or Polly Draper?" ->
/// Mary Collins, Polly Draper, earlier). `None` for other questions, and where an option is no name.
pub(super) fn asks_which_came(question: &str) -> Option<(String, String, Order)> {
    let all = split(question);
    let lower: Vec<String> = all.iter().map(|w| w.core().to_lowercase()).collect();
    if lower.iter().any(|w| ENDINGS.contains(&w.as_str())) {
        return None;
    }
    let or = (1..all.len().saturating_sub(1)).find(|&i| all[i].text == "or")?;
    // The first option: the name that ends just before "or" (a comma after it allowed); the second: the
    // name that starts just after it, up to the punctuation that ends it.
    let first = name_around(&all, or - 1, or - 1)?;
    let second = name_around(&all, or + 1, or + 1)?;
    // The word that asks for an order: the one before the first option, or the question's last.
    let asking = [first.0.checked_sub(1), Some(all.len() - 1)];
    let order = asking.iter().flatten().find_map(|&i| {
        let word = lower[i].as_str();
        let option = (first.0..=second.1).contains(&i);
        match () {
            _ if option => None,
            _ if EARLIER.contains(&word) => Some(Order::Earlier),
            _ if LATER.contains(&word) => Some(Order::Later),
            _ => None,
        }
    })?;
    let text = |(from, to): (usize, usize)| as_written(question, &all, from, to);
    Some((text(first), text(second), order))
}

/// Sentences after the one that names an option where its first year may stand ("Allure is an American
/// magazine. It was founded in 1991."); fixed before measuring.
const YEAR_LOOKAHEAD: usize = 2;

/// The first year (a four-digit number from 1000 to 2099) given where the document names `option` (its
/// words in a row, in its case) without `other`: in that sentence or the [`YEAR_LOOKAHEAD`] after it in the same
/// chunk, with the sentence that gives it, as evidence. A sentence that opens with the option (where a
/// text introduces it: "Polly Draper (born June 15, 1955) is ...") is looked for first, then any that
/// names it; each in the chunks read first, then the rest in document order.
fn first_year(option: &str, other: &str, texts: &[String], read: &[usize]) -> Option<(u32, Evidence)> {
    let name: Vec<String> = cased_words(option).split_whitespace().map(str::to_string).collect();
    let rival = cased_words(other);
    let order: Vec<usize> = read_first(read, texts.len()).collect();
    for opening in [true, false] {
        for &chunk in &order {
            let said: Vec<&str> = sentences(&texts[chunk]).collect();
            let found =
                said.iter().position(|s| names_whole(s.trim(), &name, opening) && !cased_words(s).contains(&rival));
            let Some(at) = found else {
                continue;
            };
            return said[at..].iter().take(YEAR_LOOKAHEAD + 1).find_map(|sentence| {
                let year = quoted_words(sentence)
                    .split_whitespace()
                    .filter(|w| w.len() == 4)
                    .filter_map(|w| w.parse::<u32>().ok())
                    .find(|y| (1000..2100).contains(y))?;
                let evidence = Evidence { chunk, read: read.contains(&chunk), sentence: sentence.trim().to_string() };
                Some((year, evidence))
            });
        }
    }
    None
}

/// True when `sentence` names `name` (its words in a row, in their case) as a whole name: at its opening
/// only (`opening`) or anywhere, and not followed by another capitalised word ("Ian Paisley Jr") unless
/// punctuation parts them ("Ian Paisley: Ian Richard Kyle Paisley ...").
fn names_whole(sentence: &str, name: &[String], opening: bool) -> bool {
    let said = cased_words(sentence);
    let said: Vec<&str> = said.split_whitespace().collect();
    let n = name.len();
    let starts = if opening { 0..1 } else { 0..said.len() };
    n > 0
        && starts.filter(|&k| k + n <= said.len() && said[k..k + n].iter().zip(name).all(|(a, b)| a == b)).any(|k| {
            let rest = after_words(sentence, k + n);
            let next = rest.trim_start().chars().next();
            !rest.starts_with(char::is_whitespace) || !next.is_some_and(char::is_uppercase)
        })
}

/// The text after its first `n` words, as [`cased_words`] counts them ("" where it has no more).
fn after_words(text: &str, n: usize) -> &str {
    match n.checked_sub(1).and_then(|last| word_spans(text).get(last).copied()) {
        Some((_, end)) => &text[end..],
        None => "",
    }
}

/// For a question that asks which of two named options came first or last ([`asks_which_came`]): the
/// option whose first year in the document ([`first_year`]) is the earlier or the later, with the
/// sentence that gives it. `None` where the question is of another kind, an option has no year, or
/// both have the same.
pub(super) fn by_years(question: &str, texts: &[String], read: &[usize]) -> Option<(String, Evidence)> {
    let (a, b, order) = asks_which_came(question)?;
    let (year_a, evidence_a) = first_year(&a, &b, texts, read)?;
    let (year_b, evidence_b) = first_year(&b, &a, texts, read)?;
    let a_first = match year_a.cmp(&year_b) {
        std::cmp::Ordering::Equal => return None,
        other => other == std::cmp::Ordering::Less,
    };
    Some(if a_first == (order == Order::Earlier) { (a, evidence_a) } else { (b, evidence_b) })
}

#[cfg(test)]
mod tests {
    use super::{asks_which_came, by_years, offers_choice, whole_option, Order};

    #[test]
    fn a_question_offers_a_choice_when_it_has_or_as_a_word() {
        assert!(offers_choice("Who is older, Ivan Foster or Ian Paisley?"));
        assert!(offers_choice("Which came first: Muppet Treasure Island OR Million Dollar Arm"));
        assert!(!offers_choice("Which former mill town is near Rivington Hall Barn?"));
        assert!(!offers_choice("Which organ is in Oregon?"));
    }

    #[test]
    fn part_of_an_option_is_given_whole() {
        let cases = [
            ("Polly", "Who was born first, Mary Collins or Polly Draper?", "Polly Draper"),
            ("David", "Who was born first David Draiman or Terry Kath?", "David Draiman"),
            ("Draiman", "Who was born first David Draiman or Terry Kath?", "David Draiman"),
            ("M. A.", "Which scholar was born first, Kamal al-Din or M. A. Muqtedar Khan?", "M. A. Muqtedar Khan"),
            ("Treasure", "Muppet Treasure Island or Million Dollar Arm?", "Muppet Treasure Island"),
            ("Spirit", "Which band was active the longest, Spirit of the West or Big Pig?", "Spirit of the West"),
            ("You're", "Which movie was filmed first \"The Guest\" or \"You're Next\"?", "You're Next"),
            (
                "Sri Lankabhimanya",
                "Who had the greater impact, Jean Vigo or Sri Lankabhimanya Lester James Peries?",
                "Sri Lankabhimanya Lester James Peries",
            ),
        ];
        for (answer, question, whole) in cases {
            assert_eq!(whole_option(answer, question).as_deref(), Some(whole), "{answer} / {question}");
        }
    }

    #[test]
    fn other_answers_are_left_as_they_are() {
        for (answer, question) in [
            // Already whole, not in the question, not a name, across two options, no choice offered.
            ("Mary Collins", "Who was born first, Mary Collins or Polly Draper?"),
            ("Mount Everest", "Which peak is flanked by Manaslu, Shispare or Ngadi Chuli?"),
            ("second", "Is his birthplace the largest or the second largest city in Morocco?"),
            ("Collins or Polly", "Who was born first, Mary Collins or Polly Draper?"),
            ("Polly", "Who played opposite Polly Draper in the film?"),
            ("", "Who was born first, Mary Collins or Polly Draper?"),
            // The question's opening word is no part of an option.
            ("Lakers", "Which Lakers or Celtics player scored more?"),
        ] {
            assert_eq!(whole_option(answer, question), None, "{answer} / {question}");
        }
    }

    #[test]
    fn questions_that_ask_which_came_first_or_last_name_their_two_options() {
        let cases = [
            ("Who was born first, Mary Collins or Polly Draper?", "Mary Collins", "Polly Draper", Order::Earlier),
            (
                "Which movie came out first Muppet Treasure Island or Million Dollar Arm ?",
                "Muppet Treasure Island",
                "Million Dollar Arm",
                Order::Earlier,
            ),
            ("Was Hoobastank or Fountains of Wayne formed first?", "Hoobastank", "Fountains of Wayne", Order::Earlier),
            (
                "Which film director is younger, Robert Z. Leonard or Sinclair Hill?",
                "Robert Z. Leonard",
                "Sinclair Hill",
                Order::Later,
            ),
            (
                "Which music group is older, DC Talk, or Manchester Orchestra?",
                "DC Talk",
                "Manchester Orchestra",
                Order::Earlier,
            ),
            (
                "Which movie was filmed first \"The Guest\" or \"You're Next\"?",
                "The Guest",
                "You're Next",
                Order::Earlier,
            ),
            (
                "What film came out first, All the Marbles or What Ever Happened to Baby Jane?",
                "All the Marbles",
                "What Ever Happened to Baby Jane",
                Order::Earlier,
            ),
            (
                "Which was published most recently, InStyle or Godey's Lady's Book?",
                "InStyle",
                "Godey's Lady's Book",
                Order::Later,
            ),
        ];
        for (question, a, b, order) in cases {
            assert_eq!(asks_which_came(question), Some((a.to_string(), b.to_string(), order)), "{question}");
        }
        for question in [
            // No order asked for, an end asked about, an option that is no name, a later word elsewhere.
            "Who had more pen names, George Orwell or Nelson DeMille?",
            "Who died first, Mary Collins or Polly Draper?",
            "Is his birthplace the largest or the second largest city in Morocco?",
            "Which person went into space at a later date, Sigmund Jahn or Christer Fuglesang?",
            "Who was first?",
        ] {
            assert_eq!(asks_which_came(question), None, "{question}");
        }
    }

    #[test]
    fn the_years_the_document_gives_decide_which_came_first() {
        let texts = vec![
            "Mary Collins: Mary Collins (born 24 March 1961) is a British actress. She starred in 1990.".to_string(),
            "Polly Draper: Polly Draper (born June 15, 1955) is an American actress. Allure: Allure is an \
             American magazine. It was founded in 1991 by Linda Wells. Genre is a magazine founded in 1981."
                .to_string(),
        ];
        let (answer, evidence) = by_years("Who was born first, Mary Collins or Polly Draper?", &texts, &[1]).unwrap();
        assert_eq!(answer, "Polly Draper");
        assert_eq!(evidence.sentence, "Polly Draper: Polly Draper (born June 15, 1955) is an American actress.");
        assert!(evidence.read);
        let (answer, _) = by_years("Who is younger, Mary Collins or Polly Draper?", &texts, &[]).unwrap();
        assert_eq!(answer, "Mary Collins");
        // A year a sentence or two after the one that names the option.
        let (answer, evidence) =
            by_years("Which magazine was founded first, Allure or Genre?", &texts, &[0, 1]).unwrap();
        assert_eq!((answer.as_str(), evidence.sentence.as_str()), ("Genre", "Genre is a magazine founded in 1981."));
        // The sentence that introduces an option counts before one that only names it; words in a row.
        let texts = vec![
            "The Night Watch is a 2007 film with Johan Leysen. The guest of honour came in 2001.".to_string(),
            "Johan Leysen (born 19 February 1950) is a Belgian actor. George Clooney (born 1961) acts.".to_string(),
            "The Guest is a 2014 thriller. You're Next is a 2011 film.".to_string(),
        ];
        let (answer, evidence) =
            by_years("Who was born first, Johan Leysen or George Clooney?", &texts, &[0, 1]).unwrap();
        assert_eq!((answer.as_str(), evidence.chunk), ("Johan Leysen", 1));
        let (answer, _) =
            by_years("Which was filmed first, \"The Guest\" or \"You're Next\"?", &texts, &[0, 2]).unwrap();
        assert_eq!(answer, "You're Next");
        // A longer name that begins with the option's is another name.
        let texts = vec![
            "Ian Paisley Jr: Ian Paisley Jr (born 1966) is an MP. Ivan Foster (born 1943) is a minister.".to_string(),
            "Ian Paisley: Ian Richard Kyle Paisley (6 April 1926 - 12 September 2014) was a politician.".to_string(),
        ];
        let (answer, _) = by_years("Who is older, Ivan Foster or Ian Paisley?", &texts, &[0, 1]).unwrap();
        assert_eq!(answer, "Ian Paisley");
        // An option the document does not name, or no year for it: no decision.
        assert_eq!(by_years("Who was born first, Mary Collins or Ann Wilson?", &texts, &[0, 1]), None);
        let no_year = vec!["Mary Collins is an actress.".to_string(), "Polly Draper was born in 1955.".to_string()];
        assert_eq!(by_years("Who was born first, Mary Collins or Polly Draper?", &no_year, &[0, 1]), None);
    }
}
