"""The public data sets `dlcli data get` fetches: where each comes from, its licence, and the size and
sha256 of every file where they are known.

A checksum is recorded only where it was computed from a copy known to be the same bytes (the copies
in ../shared/data, or a file in the publisher's git history at the pinned commit) or published by the
source itself; elsewhere it is None and `get` says the file was not verified. GitHub URLs are pinned
to a commit so that their bytes cannot change under the checksum.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import PurePosixPath

from dlcli.errors import InputError


@dataclass(frozen=True)
class File:
    """One file of a data set. `name` is its path in the data set's folder and under a `--from` mirror."""

    url: str
    name: str
    size: int | None = None
    sha256: str | None = None
    sha1: str | None = None  # where the publisher gives only SHA-1 (d2l's DATA_HUB)
    members: str = ""  # an archive: unpack only the members under this prefix ...
    strip: str = ""  # ... with this prefix taken off their names

    @property
    def archive(self) -> str | None:
        """"zip", "tar" or "gz" when the file is unpacked after it is verified."""
        for suffix, kind in ((".zip", "zip"), (".tar", "tar"), (".tar.gz", "tar"), (".tgz", "tar"), (".gz", "gz")):
            if self.name.endswith(suffix):
                return kind
        return None


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    source: str  # the publisher's page
    licence: str
    files: tuple[File, ...]

    @property
    def size(self) -> int | None:
        """Bytes to download; None when a file's size is not known."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    @property
    def verified(self) -> bool:
        """Whether every file has a checksum."""
        return all(f.sha256 or f.sha1 for f in self.files)


D2L = "http://d2l-data.s3-accelerate.amazonaws.com/"
CHAR_RNN = "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
GENSIM = ("https://raw.githubusercontent.com/piskvorky/gensim/37f90ec121eb7cd401448a947e80953e0c53ccdc/"
          "gensim/test/test_data/")
# The parent of instant-ngp's "Smaller fox dataset" commit: all 67 images that transforms.json lists.
NGP = "https://raw.githubusercontent.com/NVlabs/instant-ngp/4b531f97087f8ba50b7e8cc2875cb3ee22f1e890/data/nerf/"
HH = "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/"
# nerf_synthetic.zip on the NeRF authors' Google Drive (the id nerfstudio and nerfbaselines download).
BLENDER = "https://drive.usercontent.google.com/download?id=18JxhpWD-4ZmuFKLzKlAw-w5PpzZxXOcG&export=download&confirm=t"
# nerf_llff_data.zip in the same Drive folder: NeRF's forward-facing captures (the id nerfbaselines downloads).
LLFF = "https://drive.usercontent.google.com/download?id=16VnMcF1KJYxN9QId6TClMsZRahHNMW5g&export=download&confirm=t"
NERF_SYNTHETIC = ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship")
LLFF_SCENES = ("fern", "flower", "fortress", "horns", "leaves", "orchids", "room", "trex")

# sha256, size, path of instant-ngp's fox (computed from ../shared/data/nerf/fox, the same bytes as NGP).
_FOX = """
aef0a5c306c640f0955c0f27642dee876723ecab676b424b7c67c368ec21b16f 386948 images/0001.jpg
e8c34293e0022e40e920692bb095e5c165c8fa05418a5301abc2ef631c0c62ea 400386 images/0002.jpg
053c7fb24ca18b2e76329c8f98ee671ea99068a9004acdc09c4e6b75d4084e13 390082 images/0003.jpg
750be24995a73cf690ab2f8204b5601050176528b65e209bff4d8ab78fa7e891 374233 images/0004.jpg
c66b429d9a3ea4c9849eddbc414b91c73e683d93c0ca2a8d1ee91960e27e9ee1 351573 images/0005.jpg
2f8886b3c7cac5602902f7bd59ad7c112da7beb146c04aa1fdabbb7b220eef04 366803 images/0006.jpg
6a5f768972920253c0912b7ab5ad977b0745b75a862302c5fc749de4a5af7541 346871 images/0007.jpg
0a4baa3e03c6d5c3d73db152020c62b7e1445c63130722a92d3dcc42eaab5528 344625 images/0008.jpg
867bc4daf686588b83d8b0b56ad1bfafa6f5d1b971112385452ca9358acd98e4 369750 images/0009.jpg
0c42740859fb5c4ecf4a680eb5d18fdd0ee93c7d788efd39c22be5eb53ab8c50 349166 images/0012.jpg
79e2b89aeeeedf23d207f9fa82c85ebfcf277df2cdcbd16c65d77623bd253013 361959 images/0014.jpg
c385861ec75960e4088b8ed2ce10f90456baf6c0434666c234b9e0d489dbe4c4 329337 images/0016.jpg
56438cf57f96e3a3d38c506ce1f64a5243d4e48151857d651c2155eede66613b 344907 images/0017.jpg
d2ce02c35d25c49a4034b31c248e159a8f75adbde144d6822b4bddf7860a547c 375745 images/0018.jpg
66d74abbcf2e620c5811b92489bce143e0d746b1d8e4f03430fb468a855e3b73 374369 images/0019.jpg
d2cfbfe371583c0b1237dae330a79f57870452fd0e7585f721935cd33a550938 344688 images/0021.jpg
96b395f6f38e857d69c51b6fd08fbf6846f08af7ce02fda6cf5755247088e6ac 356551 images/0022.jpg
4c40f029631f23826c0bef902e3c0999fffd1e23bd19a36a75a6373707137bba 345336 images/0024.jpg
f7b3edf15014dee1deb6e8edc52423a4beb5abd73c425e8ea94ee8b3c28f397e 367603 images/0025.jpg
a3e2de082452bc02dbeb3b930bb4591ff1f8eacbc7c2a06877b791880ae7f525 352704 images/0026.jpg
6e3e2683b4c0ee86067b17b9aef2a818149205b33927da133ad7bed3f61979f4 365048 images/0027.jpg
50132bea478dd112276e6308e7cf2a70bfa23617f191a0acdd5d0ecf510c48d6 377196 images/0029.jpg
3126fa028931cf38cab78b692bde131e22b4189d8f6f010bb86bb8723de6324d 395103 images/0030.jpg
672a7c1dd0399174b173f2484208de6578fdc7fe9cd85ff6f2a21318e19f72ec 380638 images/0031.jpg
bea4a712731ada432f8060cdb97a7a04148e2081fe4fd6327ce52e99969b0f90 353512 images/0032.jpg
e631b9c8df1d1c3bdcc8afbec2afb40564fb398db3f4c145bef4b4f72571fc83 415923 images/0033.jpg
e526e6f28e2a7d2657c3d5e59ea21c00923084935bae4a3ade5ccdb1459b74e7 342410 images/0034.jpg
8117f5c5cc4a79b9e332f60e18805b023d9bb8a526a151fc4ec88b7e012e7579 348539 images/0035.jpg
c3b74eac0ba41e3fc8798cc558815f42d5827153db14457d4c4cf7e447ae823f 404399 images/0039.jpg
bc02122cef2624089c65304d49b80a02e3056285d67f34ea2c40dde6003ea880 404011 images/0042.jpg
02f3403946aa74b0a69d8e80068c2c2acfc8400d53a3d472f0c8bb9e180dbd5b 350099 images/0044.jpg
62a0c5eb024bd76af09b6a787f34333ab44ddeede8d4998dbff5d1241a2101b0 380783 images/0045.jpg
138b2d01953c2eb9843f97abb612f6d12945dcd74f71bdd73ee8715f762b7cc8 342707 images/0046.jpg
175d38ce8fab0d94cadc1b630c0e0173d61bb427b3070e8830fb3c7def112ba3 393964 images/0049.jpg
04ed54744ef07a2734b2440e8320711f55c3a56a1cd520c37e0298ea0627d328 362403 images/0051.jpg
c1f7a39a9838759a218965d40f00f71cdd082f71ae90f07470102293f175b20e 322794 images/0052.jpg
c4d5af7198188dbaff6d1aac6d1769fc1ccb9a2a49222d30e1ce65b2f2ef4c17 349691 images/0054.jpg
2fabba0efa748f85794cd54a77d876db87df7871ba298d150a67d053de5a6726 282246 images/0068.jpg
8c0fd1e244d01bcb80f036d2320546dd17b55ea698c9a6eacf00f232cbc2ba56 335173 images/0071.jpg
a7f9bb82b3f681080489305772fbd59219ebf6ed393a5c771ac88bd6291b1ab4 344035 images/0072.jpg
3e6e1ce2abd35ce0181ac98924c3849dc7c141ff2129ac50a56b10c3f035a548 349949 images/0073.jpg
f460fa95494be3beb15d90ff4cb0a5de843f28120d55c6d7cd69a586fe2d6625 341445 images/0074.jpg
baacc895fdc9a995d32724b552ae901ab2cb0388e97b4587edb14f8d85233b81 327612 images/0075.jpg
7a730a5fb453ce41dbb7567fb742dc6d0d476ac1c996b59d84fff1727d5c3e02 335339 images/0076.jpg
bd3b3c855e24f688fca6aca2656859219b7ac63723c9aa77f24ff9d8a9c968d4 334095 images/0077.jpg
d8416396fde3fc5f1b56140b34a88d69638029b95bffef35c3facb3dbe279e89 336877 images/0078.jpg
d9677b6b3e7aff05287633aee2106543c6ff26cd4252a30c0c808a61945568ab 354402 images/0081.jpg
d7a8ab9f96ff2aef96b5058e55963a1f201cae22ee9b6f46468dccbb04a71579 350937 images/0083.jpg
72adaaa6cfa520233863a712f14707682993a6de05294cc09ddeed3b572940ac 348894 images/0084.jpg
1637df9555ab8cc38bcfe81fd73938a7ffc876bc3a0cb1ebdc2b63872b1be736 345330 images/0085.jpg
ca8b02bc4198e8fdb7dae88b64ba51efb4d33d9c049238c19641d1e7bc68737f 347642 images/0087.jpg
8e55b4e173586fc70efdfbecb26f812bb3c7c2dd0e30f0a13031daee094dfe2a 357170 images/0088.jpg
302bf82cc3967480e03965153e9c2238ef2467cc63e940182b497b8e89e37e8e 371682 images/0089.jpg
6d625ef46d96a30b98f3f8f6972b0d2c649573f381e454c208cb8c07a8d8655d 327827 images/0090.jpg
ec1b613875c32e127aa8ac2ae6384e427d417a01fd01ee1e8b21f8906960bdc5 358581 images/0093.jpg
bc598dbd8e3c37ec779224f594c1db90759c724215c866b6db7a3aa6386e09a5 376334 images/0094.jpg
7a78d4541cfe43b49f5ae7d6813514942fdafa1533a707dbb05a252b495a744a 329759 images/0097.jpg
50cf30142be2e7f5c04c5e584f3beb64c0e49441c204a06bd4c7d44245780e5a 326284 images/0099.jpg
fc3ed4d18f48fdf9b05d62876e1f175e880a4c0ad3eb773dbe45306d60095468 431499 images/0103.jpg
dee77095d99575d52d78492c27b9ff954e60b0b6adc60265d625118b4411bb85 382599 images/0104.jpg
96421e9a12bd0549c6e0337bd7e88930bca680859e66facd2d68dfedd4cc500f 379251 images/0105.jpg
a6901b7cd5f52d3668ba90eebdca5d574b2bb8f0b09af10fbf536cfde63f9377 368828 images/0106.jpg
97193717a93db549d8a17ec309f3aa59d233a1edaa2784bc7b98eaaefde7a6e3 385511 images/0107.jpg
a76fd8cf1bb6faa5370a2c1a46830e7c43c3d5c7def314ea7e6999b01416d2bc 375732 images/0108.jpg
af0dcd1b517aa0501a97cd2fb626366dfd8fc8b7580c04c4c7bd13c129116a4c 358964 images/0110.jpg
b01dce99f3bce1b6872ae410519ee64ea6befc4a937136de15510547fb8c03fd 375534 images/0113.jpg
ed663fe7020955a2410896cbc726ffb3cd5570d0e254a5e7f48739a4e3f8a313 471017 images/0115.jpg
6e39ab762afa7a4ec3febae8048f7e3fbfab62aeb50e58a66645956d8679192c 42644 transforms.json
"""


def _blender(scene: str) -> Dataset:
    """One nerf_synthetic scene: every scene is in the one zip, so each downloads all of it and keeps its own."""
    return Dataset(f"nerf-{scene}", f"NeRF synthetic scene '{scene}' (800x800; the whole nerf_synthetic.zip is "
                   "downloaded)", "https://www.matthewtancik.com/nerf", "research use, as distributed by the NeRF "
                   "authors",
                   # sha256 as published by nerfbaselines for the same Drive file; its size is not known here.
                   (File(BLENDER, "nerf_synthetic.zip",
                         sha256="f01fd1b4ab045b0d453917346f26f898657bb5bec4834b95fdad1f361826e45e",
                         members=f"nerf_synthetic/{scene}/", strip="nerf_synthetic/"),))


def _llff(scene: str) -> Dataset:
    """One LLFF scene: images (full size, images_4, images_8), poses_bounds.npy and COLMAP's sparse/0."""
    return Dataset(f"nerf-llff-{scene}", f"NeRF's forward-facing LLFF capture '{scene}' (COLMAP model in sparse/0; "
                   "the whole nerf_llff_data.zip is downloaded)", "https://bmild.github.io/llff/",
                   "research use, as distributed by the NeRF authors",
                   # sha256 as published by nerfbaselines for the same Drive file; its size is not known here.
                   (File(LLFF, "nerf_llff_data.zip",
                         sha256="5794b432feaf4f25bcd603addc6ad0270cec588fed6a364b7952001f07466635",
                         members=f"nerf_llff_data/{scene}/", strip="nerf_llff_data/"),))


def _fox() -> tuple[File, ...]:
    rows = [line.split() for line in _FOX.strip().splitlines()]
    return tuple(File(NGP + "fox/" + p, "fox/" + p, int(n), h) for h, n, p in rows)


CATALOG: tuple[Dataset, ...] = (
    Dataset("timemachine", "H. G. Wells, The Time Machine (the d2l.ai book's copy)", "https://d2l.ai",
            "public domain (Project Gutenberg)",
            (File(D2L + "timemachine.txt", "timemachine.txt", 178_979,
                  "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516",
                  "090b5e7e70c295757f55df93cb0a180b9691891a"),)),
    Dataset("tinyshakespeare", "Tiny Shakespeare, the char-rnn / nanoGPT corpus", "https://github.com/karpathy/char-rnn",
            "public domain text (char-rnn: MIT)",
            (File(CHAR_RNN + "data/tinyshakespeare/input.txt", "tinyshakespeare.txt", 1_115_394,
                  "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),)),
    Dataset("fra-eng", "Tatoeba English-French pairs (d2l's fra-eng.zip: fra-eng/fra.txt)",
            "https://www.manythings.org/anki/", "CC-BY 2.0 (Tatoeba)",
            (File(D2L + "fra-eng.zip", "fra-eng.zip", sha1="94646ad1522d915e7b0f9296181140edcf86a4f5"),)),
    Dataset("text8", "text8: the first 10^8 bytes of cleaned English Wikipedia, for word2vec",
            "http://mattmahoney.net/dc/textdata.html", "CC BY-SA (Wikipedia text)",
            (File("http://mattmahoney.net/dc/text8.zip", "text8.zip"),)),
    Dataset("lee-background", "Lee background corpus: 300 news documents, one a line (gensim's word2vec tests)",
            "https://github.com/piskvorky/gensim", "as distributed with gensim's test data (gensim: LGPL-2.1)",
            (File(GENSIM + "lee_background.cor", "lee_background.cor", 360_082,
                  "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"),)),
    Dataset("questions-words", "word2vec analogy test set (Mikolov et al. 2013)", "https://github.com/piskvorky/gensim",
            "Apache-2.0 (Google's word2vec)",
            (File(GENSIM + "questions-words.txt", "questions-words.txt", 603_955,
                  "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"),)),
    Dataset("wordsim353", "WordSim-353 word-similarity judgements (Finkelstein et al. 2002), as TSV",
            "http://www.cs.technion.ac.il/~gabr/resources/data/wordsim353/",
            "free for research (as distributed with gensim's test data)",
            (File(GENSIM + "wordsim353.tsv", "wordsim353.tsv", 7_186,
                  "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"),)),
    Dataset("hh-rlhf", "Anthropic HH-RLHF preference pairs: helpful-base and harmless-base, train and test",
            "https://huggingface.co/datasets/Anthropic/hh-rlhf", "MIT",
            tuple(File(HH + f"{part}/{split}.jsonl.gz", f"hh-rlhf/{part}/{split}.jsonl.gz")
                  for part in ("helpful-base", "harmless-base") for split in ("train", "test"))),
    *(_blender(scene) for scene in NERF_SYNTHETIC),
    *(_llff(scene) for scene in LLFF_SCENES),
    Dataset("fox", "Instant-NGP's fox: 67 hand-held photos with camera poses (transforms.json)",
            "https://github.com/NVlabs/instant-ngp", "NVIDIA Source Code License-NC (non-commercial)", _fox()),
)


def find(name: str) -> Dataset:
    """The data set called `name`; an InputError with a did-you-mean otherwise."""
    for d in CATALOG:
        if d.name == name:
            return d
    names = [d.name for d in CATALOG]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(names)})"
    raise InputError(f"{name}: no such data set{hint}; 'dlcli data list' shows them")


def providing(path: str) -> Dataset | None:
    """The data set a missing input file is probably from, by its name (`timemachine.txt`, `fra-eng.txt`)."""
    stem = PurePosixPath(path).name.split(".")[0].lower()
    for d in CATALOG:
        if stem == d.name.replace("-", "_") or stem == d.name or any(
                stem == f.name.split(".")[0].lower() for f in d.files if "/" not in f.name):
            return d
    return None
