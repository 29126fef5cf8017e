"""``categorical``: one string value per row, embedded from its own vocabulary."""
from transform.kinds.id import Id


class Categorical(Id):
    name, order = "categorical", 20
    shares_ids = False  # its own vocabulary, even on an id column
    restricts = True


KIND = Categorical()
