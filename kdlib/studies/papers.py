"""The published numbers the study stands beside, each typed once here with its source (the seeds are in
the study's sources; see docs/conventions.md). Data only: the steps put them in their own attributed columns,
never mixed with ours, and the report reads them from here.

Seed 000: Jang (2021), MSc thesis. Seed 001: Park, GLUE poster. Seed 003: Yu & Kim (2022). Seed 004: Im, Kim &
Suh, DistilBERT on a Raspberry Pi 5. DistilBERT: Sanh et al. (2019).
"""
from __future__ import annotations

# Seed 000, Table 4: (layers, FFN size) -> (parameters, prediction seconds). "Prediction time" is stated
# without device, batch or length; its Table 6 calls the same quantity the total time over the 5,000 items.
SEED000_TABLE4 = {
    (1, 192): (26_555_376, 128), (1, 768): (27_440_688, 136), (1, 3072): (30_981_936, 177),
    (3, 192): (31_878_000, 292), (3, 768): (34_533_936, 330), (3, 3072): (45_157_680, 475),
    (6, 192): (39_861_936, 548), (6, 768): (45_173_808, 649), (6, 3072): (66_421_296, 882),
}


# Seed 000's teacher (KcBERT-base) and the shape of its students' configuration.
SEED000_TEACHER = {"layers": 12, "hidden": 768, "ffn": 3072, "heads": 12, "vocab": 30_000, "max_positions": 300}


# Published numbers, each attributed to its seed. Accuracy as a fraction, time in seconds.
SEED000_TABLE6 = [  # Jang (2021), Table 6: accuracy and total prediction time over the 5,000 items
    {"model": "KoBERT", "accuracy": 0.969, "total_time_s": 36 * 60 + 15, "analog": None},
    {"model": "KcBERT-base", "accuracy": 0.967, "total_time_s": 36 * 60 + 20, "analog": "teacher"},
    {"model": "mBERT", "accuracy": 0.943, "total_time_s": 42 * 60 + 30, "analog": None},
    {"model": "distil-KcBERT", "accuracy": 0.924, "total_time_s": 5 * 60 + 30, "analog": "half_depth"},
    {"model": "ALBERT-base", "accuracy": 0.892, "total_time_s": 10 * 60, "analog": "albert"},
]


SEED001_TABLE = [  # Park, GLUE poster: parameters, speed, GLUE score (its column mixes scores and % of BERT)
    {"model": "BERT-base", "params": "110M", "speed": "1x", "glue": "79.6", "analog": "teacher"},
    {"model": "BERT-large", "params": "340M", "speed": "0.2x", "glue": "82.1", "analog": None},
    {"model": "Pruning BERT", "params": "60% of BERT heads", "speed": "1.2x", "glue": "79.4", "analog": "heads"},
    {"model": "ALBERT", "params": "1/18 of BERT-large", "speed": "1.7x of BERT-large (training)", "glue": "89.4",
     "analog": "albert"},
    {"model": "Q-BERT (8 bit)", "params": "1/4 of BERT-base", "speed": "3.7x", "glue": "99.3% of BERT",
     "analog": "teacher_int8"},
    {"model": "DistilBERT", "params": "66M (6 layers)", "speed": "1.6x", "glue": "97% of BERT",
     "analog": "half_depth"},
    {"model": "TinyBERT", "params": "14.5M (4 layers)", "speed": "9.4x", "glue": "96.8% of BERT",
     "analog": "one_layer"},
]


# Seed 003's published numbers (its Tables 3-6 and Fig. 15), beside which ours are shown.
SEED003_TEACHERS = {"coarse": {"params": 1_045_378, "accuracy": 0.7822},
                  "fine": {"params": 1_046_288, "accuracy": 0.5980}}


SEED003_TABLE4 = {"A": {"accuracy": 0.5861, "macro_f1": 0.5668, "epoch": 19, "alpha": 0.3, "temperature": 28},
                "B": {"accuracy": 0.5837, "macro_f1": 0.5643, "epoch": 19, "alpha": 0.2, "temperature": 23},
                "C": {"accuracy": 0.5781, "macro_f1": 0.5623, "epoch": 22}}


SEED003_TABLE5 = {  # accuracy per epoch (early stopping off), A, B, C
    1: (0.2861, 0.2843, 0.2850), 2: (0.3940, 0.3933, 0.3939), 3: (0.4523, 0.4537, 0.4552),
    4: (0.5021, 0.5025, 0.5005), 5: (0.4999, 0.4963, 0.4975), 6: (0.5349, 0.5323, 0.5315),
    7: (0.5423, 0.5404, 0.5410), 8: (0.5465, 0.5451, 0.5454), 9: (0.5645, 0.5608, 0.5610),
    10: (0.5637, 0.5623, 0.5627), 11: (0.5654, 0.5619, 0.5610), 12: (0.5621, 0.5594, 0.5587),
    13: (0.5652, 0.5653, 0.5642), 14: (0.5659, 0.5676, 0.5653), 15: (0.5763, 0.5723, 0.5712),
    16: (0.5767, 0.5742, 0.5731), 17: (0.5792, 0.5781, 0.5777), 18: (0.5789, 0.5811, 0.5810),
    19: (0.5861, 0.5837, 0.5845), 20: (0.5784, 0.5803, 0.5795), 21: (0.5771, 0.5737, 0.5744),
    22: (0.5797, 0.5782, 0.5781)}


SEED003_TABLE6 = {  # macro-F1 per epoch; the text gives epochs 1 and 7-22 only
    1: (0.2386, 0.2379, 0.2383), 7: (0.5176, 0.5156, 0.5163), 8: (0.5236, 0.5231, 0.5234),
    9: (0.5429, 0.5392, 0.5397), 10: (0.5391, 0.5374, 0.5381), 11: (0.5442, 0.5411, 0.5400),
    12: (0.5406, 0.5385, 0.5378), 13: (0.5408, 0.5415, 0.5404), 14: (0.5437, 0.5457, 0.5438),
    15: (0.5547, 0.5507, 0.5501), 16: (0.5515, 0.5493, 0.5487), 17: (0.5595, 0.5600, 0.5598),
    18: (0.5593, 0.5617, 0.5622), 19: (0.5668, 0.5643, 0.5658), 20: (0.5585, 0.5608, 0.5598),
    21: (0.5547, 0.5512, 0.5520), 22: (0.5641, 0.5627, 0.5623)}


SEED003_FIG15 = {"target": 0.565, "A": 11, "B": 13, "C": 14}


# Seed 004's Table 2 (Raspberry Pi 5, TensorFlow 2.15): the paper's columns beside ours.
SEED004_TABLE2 = {"teacher": ("BERT-base", 54.93, 72.36, 13220.0), "half": ("DistilBERT", 52.79, 70.44, 6506.0)}


DISTILBERT_PAPER_SQUAD = {"BERT-base": (81.2, 88.5), "DistilBERT": (77.7, 85.8)}  # SQuAD v1.1 dev EM, F1


DISTILBERT_SPEEDUP_QUOTED = (("seed 001", "1.6×"), ("seed 002", "2.5×"), ("seed 004", "\"60% faster\""))


SEED001_KD_POSITIONS = [  # its table (after TinyBERT's paper): (init, pre-training signals, fine-tuning signals, DA)
    ("Distilled BiLSTM (soft)", False, (), ("prediction",), True),
    ("BERT-PKD", True, (), ("hidden", "prediction"), False),
    ("DistilBERT", True, ("prediction",), (), False),
    ("TinyBERT", False, ("embedding", "attention", "hidden"), ("embedding", "attention", "hidden", "prediction"), True),
]


SEED002_QUOTES = {
    "pruning": "Sixteen Heads: 50-60% of heads removed, 1.2x, same accuracy",
    "weight factorization": "ALBERT's factorised embeddings (with sharing: 90-95% smaller)",
    "knowledge distillation": "DistilBERT 40% smaller, 2.5x, 97%; TinyBERT 87% smaller, 9.4x, 96%",
    "weight sharing": "ALBERT 90-95% smaller, 6-20x",
    "quantization": "Q8BERT: 75% of the bits, negligible loss (speed-ups need hardware support)",
    "pre-training versus downstream": "compress before fine-tuning (general) or after (downstream)",
}
