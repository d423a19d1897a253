"""An offline English→German translation task, generated: no download, exact references.

Stand-in for WMT14 En→De in demos and tests. Every pair is produced by a small grammar with a
fixed lexicon, so the German side is the single correct translation of the English side, and a
model has to learn real translation structure to score well:

- numbers 2–9,999 written out: British English ("three hundred and forty-two", "two thousand and
  five") against German's one-word compounds with units before tens ("dreihundertzweiundvierzig",
  "zweitausendfünf"), including 16/17 → sechzehn/siebzehn, 30 → dreißig, 1 → "ein" inside compounds;
  numbers whose German form ends in "eins" (101, 201, ... 9,901) are left out because they have no
  settled attributive form;
- gender, case and adjective agreement: der/die/das, den/einen (accusative masculine), weak, mixed
  and strong adjective endings (den roten Apfel, ein rotes Buch, drei rote Äpfel), irregular plurals
  (Apfel → Äpfel, Buch → Bücher), the weak noun Junge → den Jungen;
- verb conjugation (ich kaufe, sie kauft, wir kaufen; sieht, liest, trägt, wäscht) and word order:
  verb-second after a fronted time phrase ("On Monday the man buys ..." → "Am Montag kauft der Mann
  ..."), the participle at the end of the clause in the perfect ("hat ... gekauft"), and the finite
  verb at the end of a "dass" clause ("Die Frau sagt, dass der Mann den Hund sieht.").

A sentence is [time phrase] [speaker "says that"] subject verb object, in the present or the perfect.
Subjects are pronouns (I, he, she, we, they) or people ("the old man", "the children", "three
teachers"); objects are things, animals or people allowed with the verb ("read" takes books, letters
and newspapers; "visit" takes people), with the definite or indefinite article, in the plural or with a
number, optionally with an adjective. Examples:

  I buy three hundred and forty-two red apples.  →  Ich kaufe dreihundertzweiundvierzig rote Äpfel.
  On Monday the old man has read the new book.    →  Am Montag hat der alte Mann das neue Buch gelesen.
  The woman says that the children have found a small dog.
      →  Die Frau sagt, dass die Kinder einen kleinen Hund gefunden haben.

Splits: pairs are drawn from one seeded stream and kept only if neither side has been seen before;
the first 1,000 unique pairs are `test`, the next 1,000 `validation` and the next 20,000 `train`
(SPLIT_SIZES). The splits therefore share no pair (and no English or German sentence), are fixed
by the seed, and `test`/`validation` do not change with the size of `train`. Sentences are 4 to 15
German words; numbers are drawn with 1, 2, 3 or 4 digits equally often.

Tokenizer: data/tokenizers.train_translation_bpe on the train pairs with vocab_size 800 cuts the
German numbers roughly into their parts (sieben|tausend|acht|hundert|sieben|undfünfzig) and gives at
most 34 tokens per side (mean 12), so max_source_len = max_target_len = 40 holds every pair with its
BOS/EOS. From about 1,000 upwards BPE makes whole chunks such as "hundertsiebenundfünfzig" single
tokens, which turns part of the task into memorising a larger vocabulary.
"""

import bisect
import functools
import random
from collections.abc import Sequence

from papers_jax.errors import DataError

SPLIT_SIZES = {"test": 1000, "validation": 1000, "train": 20000}  # Taken from the stream in this order.
MAX_NUMBER = 9999

# --- Numbers ---

_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_DE_ONES = ("null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn "
            "sechzehn siebzehn achtzehn neunzehn").split()
_DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()


def _check_number(n: int) -> None:
  if not 0 <= n <= MAX_NUMBER:
    raise ValueError(f"Numbers from 0 to {MAX_NUMBER} only, got {n}.")


def english_number(n: int) -> str:
  """British English cardinal: 342 → "three hundred and forty-two", 2005 → "two thousand and five"."""
  _check_number(n)
  if n < 20:
    return _EN_ONES[n]
  if n < 100:
    return _EN_TENS[n // 10] + (f"-{_EN_ONES[n % 10]}" if n % 10 else "")
  if n < 1000:
    head, rest = f"{_EN_ONES[n // 100]} hundred", n % 100
  else:
    head, rest = f"{_EN_ONES[n // 1000]} thousand", n % 1000
  if not rest:
    return head
  return f"{head} and {english_number(rest)}" if rest < 100 else f"{head} {english_number(rest)}"


def german_number(n: int) -> str:
  """German cardinal in one word: 342 → "dreihundertzweiundvierzig", 1001 → "eintausendeins"."""
  _check_number(n)
  if n < 20:
    return _DE_ONES[n]
  if n < 100:
    units, tens = n % 10, _DE_TENS[n // 10]
    return f"{'ein' if units == 1 else _DE_ONES[units]}und{tens}" if units else tens
  if n < 1000:
    head, rest = ("ein" if n // 100 == 1 else _DE_ONES[n // 100]) + "hundert", n % 100
  else:
    head, rest = ("ein" if n // 1000 == 1 else _DE_ONES[n // 1000]) + "tausend", n % 1000
  return head + (german_number(rest) if rest else "")


def attributive_number(n: int) -> bool:
  """Numbers the corpus puts before a plural noun: 2..9999 except those ending in "eins"."""
  return 2 <= n <= MAX_NUMBER and not (n > 100 and n % 100 == 1)


# --- Lexicon ---
# Nouns: English singular, plural; German gender, nominative singular, accusative singular, plural.

PEOPLE = {
    "man": ("man", "men", "m", "Mann", "Mann", "Männer"),
    "woman": ("woman", "women", "f", "Frau", "Frau", "Frauen"),
    "child": ("child", "children", "n", "Kind", "Kind", "Kinder"),
    "teacher": ("teacher", "teachers", "m", "Lehrer", "Lehrer", "Lehrer"),
    "girl": ("girl", "girls", "n", "Mädchen", "Mädchen", "Mädchen"),
    "boy": ("boy", "boys", "m", "Junge", "Jungen", "Jungen"),
    "friend": ("friend", "friends", "m", "Freund", "Freund", "Freunde"),
    "doctor": ("doctor", "doctors", "m", "Arzt", "Arzt", "Ärzte"),
}
ANIMALS = {
    "dog": ("dog", "dogs", "m", "Hund", "Hund", "Hunde"),
    "cat": ("cat", "cats", "f", "Katze", "Katze", "Katzen"),
    "horse": ("horse", "horses", "n", "Pferd", "Pferd", "Pferde"),
    "bird": ("bird", "birds", "m", "Vogel", "Vogel", "Vögel"),
}
THINGS = {
    "apple": ("apple", "apples", "m", "Apfel", "Apfel", "Äpfel"),
    "book": ("book", "books", "n", "Buch", "Buch", "Bücher"),
    "car": ("car", "cars", "n", "Auto", "Auto", "Autos"),
    "bag": ("bag", "bags", "f", "Tasche", "Tasche", "Taschen"),
    "letter": ("letter", "letters", "m", "Brief", "Brief", "Briefe"),
    "table": ("table", "tables", "m", "Tisch", "Tisch", "Tische"),
    "cup": ("cup", "cups", "f", "Tasse", "Tasse", "Tassen"),
    "ball": ("ball", "balls", "m", "Ball", "Ball", "Bälle"),
    "newspaper": ("newspaper", "newspapers", "f", "Zeitung", "Zeitung", "Zeitungen"),
    "chair": ("chair", "chairs", "m", "Stuhl", "Stuhl", "Stühle"),
    "bottle": ("bottle", "bottles", "f", "Flasche", "Flasche", "Flaschen"),
    "house": ("house", "houses", "n", "Haus", "Haus", "Häuser"),
    "bicycle": ("bicycle", "bicycles", "n", "Fahrrad", "Fahrrad", "Fahrräder"),
}
NOUNS = {**PEOPLE, **ANIMALS, **THINGS}

# Adjectives: English → German stem (all take regular endings).
PEOPLE_ADJECTIVES = {"old": "alt", "young": "jung", "small": "klein", "happy": "glücklich"}
OBJECT_ADJECTIVES = {
    "red": "rot", "green": "grün", "blue": "blau", "big": "groß", "small": "klein", "old": "alt",
    "new": "neu", "heavy": "schwer"}
ANIMAL_ADJECTIVES = {"old": "alt", "young": "jung", "small": "klein", "big": "groß"}

# Verbs: English base, 3rd singular, past participle; German 1st singular, 3rd singular, plural,
# past participle (all take "haben" in the perfect); and the objects each verb takes.
VERBS = {
    "see": (("see", "sees", "seen"), ("sehe", "sieht", "sehen", "gesehen"), (*PEOPLE, *ANIMALS, *THINGS)),
    "find": (("find", "finds", "found"), ("finde", "findet", "finden", "gefunden"), (*PEOPLE, *ANIMALS, *THINGS)),
    "visit": (("visit", "visits", "visited"), ("besuche", "besucht", "besuchen", "besucht"), tuple(PEOPLE)),
    "buy": (("buy", "buys", "bought"), ("kaufe", "kauft", "kaufen", "gekauft"), (*ANIMALS, *THINGS)),
    "sell": (("sell", "sells", "sold"), ("verkaufe", "verkauft", "verkaufen", "verkauft"), (*ANIMALS, *THINGS)),
    "need": (("need", "needs", "needed"), ("brauche", "braucht", "brauchen", "gebraucht"), tuple(THINGS)),
    "read": (("read", "reads", "read"), ("lese", "liest", "lesen", "gelesen"), ("book", "letter", "newspaper")),
    "carry": (("carry", "carries", "carried"), ("trage", "trägt", "tragen", "getragen"),
              ("dog", "cat", "bird", "apple", "book", "bag", "letter", "table", "cup", "ball", "newspaper", "chair",
               "bottle", "bicycle")),
    "wash": (("wash", "washes", "washed"), ("wasche", "wäscht", "waschen", "gewaschen"),
             ("dog", "cat", "horse", "apple", "car", "table", "cup", "ball", "chair", "bottle", "bicycle")),
}
HAVE = (("have", "has"), ("habe", "hat", "haben"))
SAY = (("say", "says"), ("sage", "sagt", "sagen"))

# Pronouns: English, German, person ("1sg", "3sg", "pl").
PRONOUNS = (("I", "ich", "1sg"), ("he", "er", "3sg"), ("she", "sie", "3sg"), ("we", "wir", "pl"),
            ("they", "sie", "pl"))
DAYS = {"Monday": "Montag", "Tuesday": "Dienstag", "Wednesday": "Mittwoch", "Thursday": "Donnerstag",
        "Friday": "Freitag", "Saturday": "Samstag", "Sunday": "Sonntag"}

# Article and adjective ending by (article, case, gender or "pl").
_DEFINITE = {("nom", "m"): "der", ("nom", "f"): "die", ("nom", "n"): "das", ("nom", "pl"): "die",
             ("acc", "m"): "den", ("acc", "f"): "die", ("acc", "n"): "das", ("acc", "pl"): "die"}
_INDEFINITE = {("acc", "m"): "einen", ("acc", "f"): "eine", ("acc", "n"): "ein"}
_ENDINGS = {
    "definite": {("nom", "m"): "e", ("nom", "f"): "e", ("nom", "n"): "e", ("nom", "pl"): "en",
                 ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "e", ("acc", "pl"): "en"},
    "indefinite": {("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "es"},
    "number": {("nom", "pl"): "e", ("acc", "pl"): "e"},  # No article: strong endings.
}


def noun_phrase(noun: str, determiner: str, case: str, adjective: str | None = None,
                number: int | None = None) -> tuple[str, str, str]:
  """(English, German, person) of a noun phrase. determiner: "definite" (singular), "definite_pl",
  "indefinite" (singular, accusative only) or "number" (plural with `number`)."""
  en_sg, en_pl, gender, de_nom, de_acc, de_pl = NOUNS[noun]
  plural = determiner in ("definite_pl", "number")
  key = (case, "pl" if plural else gender)
  de_noun = de_pl if plural else (de_acc if case == "acc" else de_nom)
  en_noun = en_pl if plural else en_sg
  en_adj = f"{adjective} " if adjective else ""
  de_adj = ""
  if adjective:
    stem = {**PEOPLE_ADJECTIVES, **OBJECT_ADJECTIVES, **ANIMAL_ADJECTIVES}[adjective]
    de_adj = stem + _ENDINGS["definite" if determiner == "definite_pl" else determiner][key] + " "
  if determiner in ("definite", "definite_pl"):
    en, de = f"the {en_adj}{en_noun}", f"{_DEFINITE[key]} {de_adj}{de_noun}"
  elif determiner == "indefinite":
    article = "an" if (en_adj or en_noun)[0] in "aeiou" else "a"
    en, de = f"{article} {en_adj}{en_noun}", f"{_INDEFINITE[key]} {de_adj}{de_noun}"
  elif determiner == "number":
    if number is None or not attributive_number(number):
      raise ValueError(f"determiner 'number' needs a number allowed by attributive_number, got {number}.")
    en, de = f"{english_number(number)} {en_adj}{en_noun}", f"{german_number(number)} {de_adj}{de_noun}"
  else:
    raise ValueError(f"Unknown determiner {determiner!r}.")
  return en, de, "pl" if plural else "3sg"


def _conjugate(forms_en, forms_de, person: str) -> tuple[str, str]:
  en = forms_en[1] if person == "3sg" else forms_en[0]
  de = forms_de[{"1sg": 0, "3sg": 1, "pl": 2}[person]]
  return en, de


def _capitalise(text: str) -> str:
  return text[:1].upper() + text[1:]


def sentence(subject: tuple[str, str, str], verb: str, obj: tuple[str, str, str], *, tense: str = "present",
             day: str | None = None, speaker: tuple[str, str, str] | None = None) -> tuple[str, str]:
  """(English, German) of one sentence. subject/obj/speaker are (English, German, person) triples
  from `noun_phrase` or PRONOUNS (obj's person is unused); tense "present" or "perfect"."""
  (en_base, en_3sg, en_pp), (*de_forms, de_pp), _ = VERBS[verb]
  s_en, s_de, person = subject
  o_en, o_de, _ = obj
  if tense == "present":
    v_en, v_de = _conjugate((en_base, en_3sg), de_forms, person)
    en_clause = f"{s_en} {v_en} {o_en}"
    main_tail, sub_tail = (v_de, f"{o_de}"), f"{o_de} {v_de}"  # (finite verb, rest), verb-final order
  elif tense == "perfect":
    have_en, have_de = _conjugate(*HAVE, person)
    en_clause = f"{s_en} {have_en} {en_pp} {o_en}"
    main_tail, sub_tail = (have_de, f"{o_de} {de_pp}"), f"{o_de} {de_pp} {have_de}"
  else:
    raise ValueError(f"Unknown tense {tense!r}.")
  if speaker is None:
    en = en_clause
    de = (f"{main_tail[0]} {s_de} {main_tail[1]}" if day else f"{s_de} {main_tail[0]} {main_tail[1]}")
  else:
    say_en, say_de = _conjugate(*SAY, speaker[2])
    en = f"{speaker[0]} {say_en} that {en_clause}"
    clause = f"dass {s_de} {sub_tail}"
    de = f"{say_de} {speaker[1]}, {clause}" if day else f"{speaker[1]} {say_de}, {clause}"
  if day:
    en, de = f"On {day} {en}", f"Am {DAYS[day]} {de}"
  return _capitalise(en) + ".", _capitalise(de) + "."


# --- Sampling ---


def _sample_number(rng: random.Random) -> int:
  while True:
    digits = 1 + int(rng.random() * 4)  # 1 to 4 digits equally often, then uniform among them.
    low, high = max(2, 10 ** (digits - 1)), 10 ** digits
    n = low + int(rng.random() * (high - low))
    if attributive_number(n):
      return n


# Sampling uses only `random.Random.random()`, whose sequence for a given seed Python keeps the same
# across versions (and which is ten times cheaper per call than numpy's Generator methods).


def _pick(rng: random.Random, options: Sequence | dict):
  """A uniformly random element (a key, for a dict)."""
  options = tuple(options)
  return options[int(rng.random() * len(options))]


def _choose(rng: random.Random, cumulative: tuple[float, ...]) -> int:
  """Index i with probability cumulative[i] - cumulative[i - 1]."""
  return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])


def _person_phrase(rng: random.Random, case: str) -> tuple[str, str, str]:
  kind = _choose(rng, (0.3, 0.65, 0.85, 1.0))  # pronoun, the N, the Ns, <number> Ns
  if kind == 0 and case == "nom":
    return _pick(rng, PRONOUNS)
  noun = _pick(rng, PEOPLE)
  adjective = _pick(rng, PEOPLE_ADJECTIVES) if rng.random() < 0.3 else None
  determiner = ("definite", "definite", "definite_pl", "number")[kind]
  return noun_phrase(noun, determiner, case, adjective, _sample_number(rng) if determiner == "number" else None)


def _object_phrase(rng: random.Random, verb: str) -> tuple[str, str, str]:
  noun = _pick(rng, VERBS[verb][2])
  adjectives = PEOPLE_ADJECTIVES if noun in PEOPLE else ANIMAL_ADJECTIVES if noun in ANIMALS else OBJECT_ADJECTIVES
  adjective = _pick(rng, adjectives) if rng.random() < 0.5 else None
  determiner = ("definite", "indefinite", "definite_pl", "number")[_choose(rng, (0.2, 0.4, 0.6, 1.0))]
  return noun_phrase(noun, determiner, "acc", adjective, _sample_number(rng) if determiner == "number" else None)


def sample_pair(rng: random.Random) -> tuple[str, str]:
  """One random (English, German) pair from the grammar."""
  verb = _pick(rng, VERBS)
  subject = _person_phrase(rng, "nom")
  obj = _object_phrase(rng, verb)
  tense = "present" if rng.random() < 0.6 else "perfect"
  frame = _choose(rng, (0.4, 0.6, 0.85, 1.0))  # plain, day, "says that", day + "says that"
  day = _pick(rng, DAYS) if frame in (1, 3) else None
  speaker = _person_phrase(rng, "nom") if frame in (2, 3) else None
  return sentence(subject, verb, obj, tense=tense, day=day, speaker=speaker)


@functools.cache
def _all_splits(seed: int) -> dict[str, tuple[tuple[str, str], ...]]:
  rng = random.Random(seed)
  seen_en, seen_de, pairs = set(), set(), []
  while len(pairs) < sum(SPLIT_SIZES.values()):
    en, de = sample_pair(rng)
    if en not in seen_en and de not in seen_de:
      seen_en.add(en)
      seen_de.add(de)
      pairs.append((en, de))
  splits, start = {}, 0
  for name, size in SPLIT_SIZES.items():
    splits[name] = tuple(pairs[start:start + size])
    start += size
  return splits


def number_sentences(split: str, seed: int = 0) -> list[tuple[str, str]]:
  """The (English, German) pairs of `split` ("train" 20,000, "validation" 1,000, "test" 1,000)."""
  if split not in SPLIT_SIZES:
    raise DataError(f"Unknown split {split!r} (data.train_split / data.eval_split) of the generated translation task; use one of {list(SPLIT_SIZES)}.")
  return list(_all_splits(seed)[split])
