"""The paper's studies and those beyond it, one module each (`studies.STUDIES` lists them in
running order); each returns its JSON-ready result. `mmoe reproduce` (`mmoe.report.reproduce`)
runs them and writes the report.

| --study | module | paper |
| --- | --- | --- |
| correlation | `correlation` | Figure 2 |
| shared-bottom | `shared_bottom` | Figure 3 |
| synthetic | `synthetic` | Figure 4 |
| trainability | `trainability` | Figure 5 |
| census | `census` | Tables 1, 2 |
| gates | `gates` | Figure 6, Section 6.4 |
| census-beyond | `census_beyond` | beyond the paper: PLE, CGC, DSelect-k beside Tables 1, 2 |
| synthetic-beyond | `synthetic_beyond` | beyond the paper: PLE in Figure 4's sweep |
| selection-bias | `selection_bias` | beyond the paper: ESMM, AITM, ... on click logs against task relatedness |
| weighting | `weighting_study` | beyond the paper: every loss weighting against equal weights |
"""
