"""The line-based credentials file editor: edits touch only what they must, errors quote no value."""
import configparser

import pytest

from plugins.module_utils._credentials_ini import MASK, CredentialsFileError, check_profile, parse

NEW = [("aws_access_key_id", "AKIANEWKEY0000000000"), ("aws_secret_access_key", "new/Secret+1")]

SAMPLE = """\
# Managed by hand; keep this header.
; another style of comment

[default]
# the app's key
aws_access_key_id = AKIAOLDKEY0000000000
aws_secret_access_key = old/Secret+0
region=eu-west-1

# production account
[prod]
aws_access_key_id: AKIAPRODKEY000000000
aws_secret_access_key: prod/Secret+9
"""


def edited(text, profile="default", values=None):
    document = parse(text)
    changed = document.set_values(profile, NEW if values is None else values)
    return changed, document.render()


def read_back(text):
    """What botocore's reader (a strict RawConfigParser) makes of the text."""
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {name: dict(parser.items(name)) for name in parser.sections()}


@pytest.mark.parametrize("text", [
    SAMPLE,
    SAMPLE.replace("\n", "\r\n"),
    SAMPLE.rstrip("\n"),
    "\ufeff" + SAMPLE,
    "",
    "\n\n",
    "[a]\nk = v\n  continued\n\n  more\n# c\n",
    "[a]\r\nk = v\nj = w\r\n",
])
def test_unchanged_document_renders_byte_identical(text):
    assert parse(text).render() == text


def test_update_in_place_keeps_comments_other_profiles_and_style():
    changed, text = edited(SAMPLE)
    assert changed
    assert text == SAMPLE.replace("AKIAOLDKEY0000000000", "AKIANEWKEY0000000000").replace(
        "old/Secret+0", "new/Secret+1")
    assert read_back(text)["prod"] == read_back(SAMPLE)["prod"]


def test_colon_delimiter_and_spacing_of_an_existing_key_are_kept():
    changed, text = edited(SAMPLE, "prod")
    assert changed
    assert "aws_access_key_id: AKIANEWKEY0000000000\naws_secret_access_key: new/Secret+1\n" in text


def test_setting_the_same_values_changes_nothing():
    document = parse(SAMPLE)
    assert document.set_values("default", [("aws_access_key_id", "AKIAOLDKEY0000000000"),
                                           ("aws_secret_access_key", "old/Secret+0")]) is False
    assert document.render() == SAMPLE


def test_keys_match_case_insensitively_like_configparser():
    text = "[default]\nAWS_Access_Key_ID = AKIAOLDKEY0000000000\nAWS_SECRET_ACCESS_KEY=x\n"
    changed, result = edited(text)
    assert changed
    assert result == "[default]\nAWS_Access_Key_ID = AKIANEWKEY0000000000\nAWS_SECRET_ACCESS_KEY=new/Secret+1\n"


def test_new_key_goes_after_the_last_key_of_its_profile_before_blank_lines_and_comments():
    text = "[default]\naws_access_key_id = AKIAOLDKEY0000000000\n\n# next\n[prod]\nx = 1\n"
    changed, result = edited(text, values=[("aws_access_key_id", "AKIAOLDKEY0000000000"),
                                           ("aws_session_token", "tok")])
    assert changed
    assert result == ("[default]\naws_access_key_id = AKIAOLDKEY0000000000\naws_session_token = tok\n"
                      "\n# next\n[prod]\nx = 1\n")


def test_new_key_in_an_empty_profile_goes_right_after_the_header():
    changed, result = edited("[default]\n\n[prod]\nx = 1\n", values=[("aws_session_token", "tok")])
    assert result == "[default]\naws_session_token = tok\n\n[prod]\nx = 1\n"


def test_new_profile_is_appended_after_one_blank_line():
    changed, text = edited(SAMPLE, "staging")
    assert changed
    assert text == SAMPLE + ("\n[staging]\naws_access_key_id = AKIANEWKEY0000000000\n"
                             "aws_secret_access_key = new/Secret+1\n")
    assert set(read_back(text)) == {"default", "prod", "staging"}


def test_new_profile_in_an_empty_file_has_no_leading_blank_line():
    changed, text = edited("")
    assert text == "[default]\naws_access_key_id = AKIANEWKEY0000000000\naws_secret_access_key = new/Secret+1\n"


def test_new_profile_with_only_removals_is_not_created():
    document = parse(SAMPLE)
    assert document.set_values("ghost", [("aws_session_token", None)]) is False
    assert document.render() == SAMPLE


def test_remove_a_key_and_its_continuation_lines():
    text = "[default]\naws_session_token = abc\n  def\n\n  ghi\nregion = x\n"
    changed, result = edited(text, values=[("aws_session_token", None)])
    assert changed
    assert result == "[default]\nregion = x\n"


def test_a_multi_line_value_is_replaced_by_one_line():
    text = "[default]\naws_session_token = abc\n  def\nregion = x\n"
    document = parse(text)
    assert document.get("default", "aws_session_token") == "abc\ndef"
    assert document.set_values("default", [("aws_session_token", "abc")]) is True
    assert document.render() == "[default]\naws_session_token = abc\nregion = x\n"


def test_missing_trailing_newline_is_kept_when_the_end_is_untouched():
    text = "[default]\naws_access_key_id = AKIAOLDKEY0000000000\naws_secret_access_key = s\n\n[prod]\nx = 1"
    changed, result = edited(text)
    assert result.endswith("[prod]\nx = 1")
    assert "AKIANEWKEY0000000000" in result


def test_missing_trailing_newline_gets_one_when_a_line_is_written_after_it():
    text = "[default]\naws_access_key_id = AKIAOLDKEY0000000000"
    changed, result = edited(text)
    assert result == "[default]\naws_access_key_id = AKIANEWKEY0000000000\naws_secret_access_key = new/Secret+1\n"
    changed, result = edited("[prod]\nx = 1")
    assert result.startswith("[prod]\nx = 1\n\n[default]\n")


def test_crlf_file_stays_crlf_including_new_lines():
    crlf = SAMPLE.replace("\n", "\r\n")
    changed, text = edited(crlf, "staging", values=NEW + [("aws_session_token", "tok")])
    assert changed
    assert text.startswith(crlf)
    assert "\n" not in text.replace("\r\n", "")
    assert read_back(text)["staging"]["aws_session_token"] == "tok"


def test_mixed_endings_untouched_lines_keep_theirs_new_lines_follow_the_first_line():
    text = "[default]\r\naws_access_key_id = AKIAOLDKEY0000000000\n"
    changed, result = edited(text)
    assert result == ("[default]\r\naws_access_key_id = AKIANEWKEY0000000000\n"
                      "aws_secret_access_key = new/Secret+1\r\n")


def test_byte_order_mark_is_kept():
    changed, text = edited("\ufeff[default]\naws_access_key_id = AKIAOLDKEY0000000000\n")
    assert text.startswith("\ufeff[default]\naws_access_key_id = AKIANEWKEY0000000000\n")
    assert parse(text).profiles() == ["default"]


def test_remove_profile_in_the_middle_keeps_the_comment_of_the_next_profile():
    document = parse(SAMPLE)
    assert document.remove_profile("default") is True
    assert document.render() == """\
# Managed by hand; keep this header.
; another style of comment

# production account
[prod]
aws_access_key_id: AKIAPRODKEY000000000
aws_secret_access_key: prod/Secret+9
"""


def test_remove_last_profile_drops_its_comments_and_the_blank_lines_before_it():
    document = parse(SAMPLE + "\n[staging]\n# inside staging\naws_access_key_id = AKIASTAGING000000000\n# trailing\n")
    assert document.remove_profile("staging") is True
    assert document.render() == SAMPLE


def test_remove_the_only_profile_leaves_the_file_comments():
    document = parse(SAMPLE)
    document.remove_profile("default")
    document.remove_profile("prod")
    assert document.render() == "# Managed by hand; keep this header.\n; another style of comment\n"


def test_remove_profile_takes_the_comment_directly_above_it_but_not_the_file_header():
    document = parse("# file header\n[a]\nx = 1\n\n# about b\n[b]\n# inside b\ny = 2\n\n[c]\nz = 3\n")
    document.remove_profile("b")
    assert document.render() == "# file header\n[a]\nx = 1\n\n[c]\nz = 3\n"
    document.remove_profile("a")
    assert document.render() == "# file header\n[c]\nz = 3\n"


def test_remove_missing_profile_changes_nothing():
    document = parse(SAMPLE)
    assert document.remove_profile("nope") is False
    assert document.render() == SAMPLE


def test_profile_names_are_case_sensitive_like_botocore():
    document = parse(SAMPLE)
    assert not document.has_profile("Default")
    document.set_values("Default", NEW)
    assert document.profiles() == ["default", "prod", "Default"]


def test_mask_hides_every_secret_in_every_profile_and_shows_key_ids():
    text = SAMPLE + "\n[tmp]\naws_session_token = tok1\n  tok2\naws_security_token=legacy\n"
    masked = parse(text).render(mask=True)
    for secret in ("old/Secret+0", "prod/Secret+9", "tok1", "tok2", "legacy"):
        assert secret not in masked
    assert "aws_secret_access_key = %s\n" % MASK in masked
    assert "aws_secret_access_key: %s\n" % MASK in masked
    assert "aws_session_token = %s\n  %s\n" % (MASK, MASK) in masked
    assert "aws_security_token=%s\n" % MASK in masked
    assert "AKIAOLDKEY0000000000" in masked and "AKIAPRODKEY000000000" in masked
    assert masked.count("\n") == text.count("\n")


def test_get_reads_values():
    document = parse(SAMPLE)
    assert document.get("prod", "aws_access_key_id") == "AKIAPRODKEY000000000"
    assert document.get("default", "AWS_ACCESS_KEY_ID") == "AKIAOLDKEY0000000000"
    assert document.get("default", "aws_session_token") is None
    assert document.get("ghost", "aws_access_key_id") is None


def test_duplicate_profile_is_a_clear_error():
    with pytest.raises(CredentialsFileError, match=r"profile \[default\] appears twice \(lines 1 and 4\)"):
        parse("[default]\nx = 1\n\n[default]\ny = 2\n")


def test_duplicate_key_is_a_clear_error_without_the_value():
    with pytest.raises(CredentialsFileError) as raised:
        parse("[default]\naws_secret_access_key = s3cr3t-one\nAWS_SECRET_ACCESS_KEY = s3cr3t-two\n")
    assert "key aws_secret_access_key appears twice in profile [default] (second at line 3)" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("text, message", [
    ("aws_secret_access_key = s3cr3t\n[default]\n", "line 1: key 'aws_secret_access_key' comes before any [profile] header"),
    ("[default]\ns3cr3t\n", "line 2 is neither 'key = value', a comment nor a [profile] header"),
    ("[default]\n= s3cr3t\n", "line 2 has a value but no key name"),
    ("[]\n", "line 1: empty section header"),
])
def test_unparseable_lines_name_the_line_never_its_text(text, message):
    with pytest.raises(CredentialsFileError) as raised:
        parse(text)
    assert message in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("value", ["two\nlines", "", " padded", "tab\there", "cr\r"])
def test_values_that_would_break_the_file_are_refused_without_echo(value):
    with pytest.raises(CredentialsFileError) as raised:
        parse(SAMPLE).set_values("default", [("aws_secret_access_key", value)])
    assert "aws_secret_access_key" in str(raised.value)
    assert "(value not shown)" in str(raised.value)


@pytest.mark.parametrize("profile", ["", "a]b", "two\nlines", " padded", "padded ", None])
def test_bad_profile_names_are_refused(profile):
    with pytest.raises(CredentialsFileError, match="is not a valid profile name"):
        check_profile(profile)


@pytest.mark.parametrize("profile", ["default", "prod-eu", "a[b", "profile with spaces", "x.y_z"])
def test_good_profile_names_round_trip_through_configparser(profile):
    changed, text = edited("", profile)
    assert read_back(text)[profile]["aws_access_key_id"] == "AKIANEWKEY0000000000"
