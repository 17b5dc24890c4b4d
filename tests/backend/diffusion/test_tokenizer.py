"""The word tokenizer: every listed word is one token, even when one word hides inside another."""

from transformers import CLIPTokenizer

from nfsd_backend.diffusion.tokenizer import write_word_tokenizer

# Each pair once cut the other apart: "low" inside "yellow", "or" (from "orange") inside "torus".
WORDS = ["low", "yellow", "orange", "torus", "focus", "cube", "unrealistic", "a"]


def test_every_word_is_one_token_and_the_folder_loads_back(tmp_path):
    tokenizer = write_word_tokenizer(WORDS, tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    for word in WORDS:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    text = "a yellow torus, low focus"
    ids = loaded(text).input_ids
    assert ids == tokenizer(text).input_ids
    assert ids[0] == loaded.bos_token_id and ids[-1] == loaded.eos_token_id
    assert loaded.convert_ids_to_tokens(ids[1:-1]) == ["a</w>", "yellow</w>", "torus</w>", ",</w>", "low</w>",
                                                      "focus</w>"]
    assert loaded.pad_token_id == loaded.eos_token_id and loaded.model_max_length == 32


def test_unlisted_words_fall_back_to_characters(tmp_path):
    tokenizer = write_word_tokenizer(WORDS, tmp_path)
    ids = tokenizer("a zebra!").input_ids[1:-1]
    assert tokenizer.convert_ids_to_tokens(ids) == ["a</w>", "z", "e", "b", "r", "a</w>", "!</w>"]
