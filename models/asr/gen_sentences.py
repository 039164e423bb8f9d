#!/usr/bin/env python3
"""Sentences with numbers, dates, times, digit strings and commands, written out in words (what a voice
says is what the transcript holds). Python's standard library only; deterministic for a seed.

    models/asr/gen_sentences.py COUNT SEED > sentences.txt
"""
import random
import sys

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
       "nine": "ninth", "twelve": "twelfth"}
MONTHS = "january february march april may june july august september october november december".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


def words(n):
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + words(n % 100))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            tail = "" if rest == 0 else (" and " if rest < 100 else " ") + words(rest)
            return words(n // size) + " " + name + tail
    raise ValueError(n)


def ordinal(n):
    w = words(n).split()
    last = w[-1]
    if last in ORD:
        w[-1] = ORD[last]
    elif last.endswith("y"):
        w[-1] = last[:-1] + "ieth"
    else:
        w[-1] = last + "th"
    return " ".join(w)


def year(y):
    if y % 1000 < 10 and y >= 2000:
        return words(y)
    hi, lo = divmod(y, 100)
    return words(hi) + " " + ("hundred" if lo == 0 else ("oh " + ONES[lo] if lo < 10 else words(lo)))


def time_of_day(r):
    h, m = r.randint(1, 12), r.choice([0, 5, 10, 15, 20, 25, 30, 40, 45, 50, r.randint(1, 59)])
    mm = "o'clock" if m == 0 else ("oh " + ONES[m] if m < 10 else words(m))
    return f"{words(h)} {mm}" + r.choice(["", " in the morning", " in the evening", " a m", " p m"])


def digits(r, n):
    return " ".join(r.choice(ONES[:10] + ["oh"] if r.random() < 0.1 else ONES[:10]) for _ in range(n))


ROOMS = "kitchen living room bedroom hallway garage office bathroom garden".split(" ")
THINGS = ["lights", "heating", "radio", "fan", "television", "music", "alarm", "camera", "door", "blinds"]


def sentence(r):
    k = r.randrange(12)
    if k == 0:
        return f"the total comes to {words(r.randint(2, 999999))} dollars" + r.choice(["", f" and {words(r.randint(1, 99))} cents"])
    if k == 1:
        return f"the meeting is on {r.choice(DAYS)} the {ordinal(r.randint(1, 31))} of {r.choice(MONTHS)}"
    if k == 2:
        return f"she was born on {r.choice(MONTHS)} {ordinal(r.randint(1, 31))} {year(r.randint(1900, 2030))}"
    if k == 3:
        return f"set an alarm for {time_of_day(r)}"
    if k == 4:
        return f"my number is {digits(r, r.randint(3, 10))}"
    if k == 5:
        return f"turn {r.choice(['on', 'off'])} the {r.choice(ROOMS)} {r.choice(THINGS)}"
    if k == 6:
        return f"set a timer for {words(r.randint(1, 90))} {r.choice(['minutes', 'seconds', 'hours'])}"
    if k == 7:
        return f"the train leaves from platform {words(r.randint(1, 20))} at {time_of_day(r)}"
    if k == 8:
        return f"in {year(r.randint(1700, 2030))} the population was about {words(r.randint(1000, 9000000))}"
    if k == 9:
        return f"the code is {digits(r, r.randint(4, 8))}"
    if k == 10:
        return f"we need {words(r.randint(2, 500))} {r.choice(['boxes', 'chairs', 'tickets', 'copies', 'bottles'])} by {r.choice(DAYS)}"
    return f"it is {words(r.randint(-20, 45) % 46)} degrees and the wind is {words(r.randint(0, 60))} miles per hour"


def main():
    count, seed = int(sys.argv[1]), int(sys.argv[2])
    r = random.Random(seed)
    seen = set()
    while len(seen) < count:
        s = sentence(r)
        if s not in seen:
            seen.add(s)
            print(s)


if __name__ == "__main__":
    main()
