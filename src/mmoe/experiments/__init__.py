"""The paper's studies, one module each (`studies.STUDIES` lists them in running order); each returns
its JSON-ready result. `mmoe reproduce` (`mmoe.report.reproduce`) runs them and writes the report.

| --study | module | paper |
| --- | --- | --- |
| correlation | `correlation` | Figure 2 |
| shared-bottom | `shared_bottom` | Figure 3 |
| synthetic | `synthetic` | Figure 4 |
| trainability | `trainability` | Figure 5 |
| census | `census` | Tables 1, 2 |
| gates | `gates` | Figure 6, Section 6.4 |
"""
