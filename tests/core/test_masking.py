from hypothesis import given
from hypothesis import strategies as st

from teleserve.core.masking import mask_email, mask_id_number, mask_name, mask_phone


def test_phone_keeps_first_three_and_last_four():
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("02088889999") == "020****9999"
    assert mask_phone("+86 13800138000") == "+86 138****8000"
    assert mask_phone("+8613800138000") == "+86138****8000"


def test_short_numbers_show_at_most_half():
    assert mask_phone("10086") == "***86"
    assert mask_phone("88889999") == "88**9999"
    assert mask_phone("1") == "*"
    assert mask_phone("") == mask_phone(None) == ""


def test_id_numbers():
    assert mask_id_number("110101199003071234") == "110101********1234"
    assert mask_id_number("11010119900307X") == "110101*****307X"
    assert mask_id_number("E12345678") == "E1*****78"
    assert mask_id_number("H1234") == "H****"
    assert mask_id_number(None) == ""


def test_names_keep_one_character_only():
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张**"
    # Compound surnames are not guessed: only the first character is kept.
    assert mask_name("欧阳娜娜") == "欧阳**"
    assert mask_name("欧阳") == "欧*"  # a two-character name keeps one character
    assert mask_name("  李四 ") == "李*"
    assert mask_name("John Smith") == "J***"
    assert mask_name("Li") == "L***"
    assert mask_name("") == mask_name(None) == mask_name("   ") == ""


def test_email_keeps_the_domain():
    assert mask_email("zhangsan@example.com") == "z***@example.com"
    assert mask_email("@example.com") == "@example.com"
    assert mask_email(None) == ""


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_mobile_mask_never_shows_the_middle(number):
    masked = mask_phone(number)
    assert len(masked) == 11
    assert masked[:3] == number[:3] and masked[-4:] == number[-4:]
    assert masked[3:7] == "****"


@given(st.text(alphabet="0123456789X", min_size=18, max_size=18))
def test_id_mask_hides_the_birth_date(number):
    masked = mask_id_number(number)
    assert masked == number[:6] + "*" * 8 + number[-4:]


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip()))
def test_name_mask_reveals_one_character(name):
    masked = mask_name(name)
    assert masked[0] == name.strip()[0]
    assert set(masked[1:]) <= {"*"}
