#!/usr/bin/env python3
"""Grades (reference, prediction) pairs with Hugging Face's math-verify (PyPI `math-verify`)
and writes tests/rewards/fixtures/math_verify_cases.json for test_math_verify.cpp.

The pairs are every {"reference", "predicted"} pair of the table in test_math_equiv.cpp plus
the extra pairs below, so our checker and math-verify are compared on the same cases. Where we
disagree with math-verify on purpose, DELIBERATE says why; the C++ test expects agreement on
every other case and the stated disagreement on these.

    pip install math-verify        # once
    python3 tests/rewards/make_math_fixtures.py
"""
import json
import pathlib
import re
import sys

from math_verify import parse, verify

HERE = pathlib.Path(__file__).resolve().parent
TABLE = HERE / "test_math_equiv.cpp"
OUT = HERE / "fixtures" / "math_verify_cases.json"

EXTRA = [
    ("72", "72"), ("72", "73"), ("\\frac{3}{5}", "0.6"), ("\\frac{3}{5}", "\\frac{6}{10}"),
    ("\\sqrt{3}", "3^{1/2}"), ("2\\sqrt{5}", "\\sqrt{20}"), ("\\frac{\\pi}{3}", "\\frac{1}{3}\\pi"),
    ("(2,3)", "(2, 3)"), ("(2,3)", "(3,2)"), ("\\{1,3\\}", "\\{3,1\\}"), ("[1,4]", "[1, 4]"),
    ("(-\\infty, 5)", "(-\\infty, 5]"), ("x^2+1", "1+x^2"), ("x^2+1", "x^2-1"),
    ("\\frac{1}{4}", "0.25"), ("\\frac{1}{4}", "25\\%"), ("100", "1e2"), ("-5", "5"),
    ("3x", "x \\cdot 3"), ("\\frac{x}{3}", "x/3"), ("\\frac{2}{3}", "0.667"),
]

# (reference, predicted) -> why our verdict differs from math-verify's on purpose.
DELIBERATE = {
    ("(1,2)", "\\{1,2\\}"): "an ordered pair/open interval is not a set (issue #5: never equal by accident)",
    ("\\{1,2\\}", "(1,2)"): "a set is not an ordered pair/open interval (issue #5)",
    ("30^\\circ", "\\frac{\\pi}{6}"): "30 degrees is pi/6 radians; a degree mark reads as both",
    ("\\frac{\\pi}{6}", "30^\\circ"): "30 degrees is pi/6 radians; a degree mark reads as both",
    ("\\frac{1}{2}", "\\sin 30^\\circ"): "a degree inside a function argument is pi/180",
    ("(1,2,3)", "\\{1,2,3\\}"): "a tuple is not a set",
    ("\\frac13", "0.333333"): "6 significant digits are not within rel_tol 1e-6 of 1/3 (rule: strictly less)",
    ("1", "1 +"): "an incomplete expression is unparsable, not 1",
    ("1", "\\begin{cases} 1 \\end{cases}"): "cases environments are not read (a known gap)",
    ("4", "\\[4\\]"): "display-math delimiters are formatting",
    ("\\frac{1}{3}", "0.\\overline{3}"): "repeating decimals are exact: 0.(3) = 1/3",
    ("\\frac{1}{6}", "0.1\\overline{6}"): "repeating decimals are exact: 0.1(6) = 1/6",
    ("-1", "e^{i\\pi}"): "i is the imaginary unit",
    ("-1", "i^2"): "i is the imaginary unit",
    ("2i", "(1+i)^2"): "i is the imaginary unit",
    ("1000", "1 000"): "space-grouped thousands",
    ("1000", "1\\,000"): "thin-space-grouped thousands",
    ("1500", "1.5e3"): "scientific notation",
    ("0.001", "1e-3"): "scientific notation",
    ("6.02 \\times 10^{23}", "6.02e23"): "scientific notation",
    ("100", "1e2"): "scientific notation",
    ("5", "5 = x"): "the variable of 'x = value' may stand on the right",
    ("k = 7", "n = 7"): "a leading variable is dropped whatever its name",
    ("[2,\\infty)", "x \\ge 2"): "an inequality in one variable is its interval",
    ("(-\\infty, 3)", "x<3"): "an inequality in one variable is its interval",
    ("(1,5]", "1 < x \\le 5"): "an inequality in one variable is its interval",
    ("(2, \\infty)", "x > 2"): "an inequality in one variable is its interval",
    ("(0,1)", "0<x<1"): "an inequality in one variable is its interval",
    ("[-1, 1]", "-1 \\le x \\le 1"): "an inequality in one variable is its interval",
    ("(2, 5)", "5 > x > 2"): "an inequality in one variable is its interval",
    ("\\langle 1, 2, 3\\rangle", "(1,2,3)"): "angle brackets are a vector's brackets",
    ("\\varnothing", "\\emptyset"): "both spell the empty set",
    ("x = 1 \\lor x = 2", "2, 1"): "\\lor separates solutions like 'or'",
    ("\\frac{-1 \\pm \\sqrt{5}}{2}", "\\frac{-1-\\sqrt5}{2}, \\frac{-1+\\sqrt5}{2}"):
        "a \\pm inside a fraction stands for both roots",
    ("\\sqrt{x}\\sqrt{x}", "x"): "sqrt(x)^2 = x for every complex x (principal branch)",
    ("x \\ne y", "y \\neq x"): "!= is symmetric",
    ("4", "2²"): "Unicode superscripts ² and ³ are powers",
    ("x^2", "X^2"): "variables are case-sensitive: X and x are different symbols",
    ("6", "6 cm^2"): "a unit word is dropped with its power",
    ("0.\\overline{36}", "\\frac{4}{11}"): "repeating decimals are exact: 0.(36) = 4/11",
    ("\\ln 2", "\\log 2"): "\\log without a base is the natural logarithm here (math-verify: base 10)",
    ("-i", "\\frac{1}{i}"): "i is the imaginary unit",
    ("\\sqrt{-4}", "2i"): "i is the imaginary unit",
    ("x=1", "x = 1, x = 1"): "lists of solutions are multisets: a repeated solution is an extra element",
    ("14", "2x = 14"): "an unsolved equation (a multiple of one term = constant) does not state its constant",
    ("7", "2x = 7"): "an unsolved equation (a multiple of one term = constant) does not state its constant",
}


def c_string(body):
    """Undoes C++ string-literal escapes (only \\\\ and \\" occur in the table)."""
    return re.sub(r'\\(.)', r'\1', body)


def table_pairs():
    text = TABLE.read_text(encoding="utf-8")
    lit = r'"((?:[^"\\]|\\.)*)"'
    return [(c_string(a), c_string(b)) for a, b in re.findall(r'\{' + lit + r',\s*' + lit + r'\}', text)]


def math_verify_equal(reference, predicted):
    try:
        gold = parse("$" + reference + "$")
        pred = parse("$" + predicted + "$")
        return bool(gold) and bool(pred) and bool(verify(gold, pred))
    except Exception:  # math-verify itself failing counts as "not equal"
        return False


def main():
    pairs, seen = [], set()
    for pair in table_pairs() + EXTRA:
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    cases = []
    for reference, predicted in pairs:
        case = {"reference": reference, "predicted": predicted,
                "math_verify": math_verify_equal(reference, predicted)}
        if (reference, predicted) in DELIBERATE:
            case["deliberate"] = DELIBERATE[(reference, predicted)]
        cases.append(case)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tests/rewards/make_math_fixtures.py",
                               "math_verify_parse": "parse('$' + answer + '$')",
                               "cases": cases}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    equal = sum(c["math_verify"] for c in cases)
    print(f"{len(cases)} cases ({equal} equal per math-verify) -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
