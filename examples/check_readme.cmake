# Fails unless README.md contains examples/minimal.cpp verbatim.
file(READ ${EXAMPLE} example)
file(READ ${README} readme)
string(FIND "${readme}" "${example}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "README.md does not contain examples/minimal.cpp verbatim: update the README's C++ example")
endif()
