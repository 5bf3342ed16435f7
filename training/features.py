"""Feature names shared by data preparation, schema, Transform, Trainer and Evaluator."""

# Raw features written by training.data into the ExampleGen input (tf.Example TFRecords).
TEXT_KEY = "text"
LABEL_KEY = "label"  # int64, 1 = POSITIVE, 0 = NEGATIVE
LENGTH_BUCKET_KEY = "length_bucket"  # slicing feature for TFMA: short / medium / long
WINDOWS_BUCKET_KEY = "windows_bucket"  # slicing feature for TFMA: windows the scorer reads: 1 / 2-4 / 5+
PIECES_KEY = "pieces"  # int64: source texts joined into this example (1 = original text, >1 = pseudo-document)

# Transformed features produced by preprocessing_fn (what the encoder consumes).
WORD_IDS = "input_word_ids"
MASK = "input_mask"
TYPE_IDS = "input_type_ids"

LABEL_NAMES = ("NEGATIVE", "POSITIVE")

# Word-count thresholds of the length buckets (bucket = first threshold the word count is <= to).
LENGTH_BUCKETS = ((12, "short"), (25, "medium"))
LONG_BUCKET = "long"


def length_bucket(text: str) -> str:
    n = len(text.split())
    for limit, name in LENGTH_BUCKETS:
        if n <= limit:
            return name
    return LONG_BUCKET


WINDOWS_BUCKETS = ((1, "1"), (4, "2-4"))
WINDOWS_BUCKET_MAX = "5+"


def windows_bucket(num_windows: int) -> str:
    for limit, name in WINDOWS_BUCKETS:
        if num_windows <= limit:
            return name
    return WINDOWS_BUCKET_MAX
