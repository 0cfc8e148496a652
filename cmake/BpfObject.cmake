# memhp_bpf_object(<name> <file.bpf.c>)
# Compiles a CO-RE BPF program with clang and generates its libbpf skeleton
# (<name>.skel.h) with bpftool into the build tree, the way libbpf-bootstrap's
# FindBpfObject does. Creates an INTERFACE target memhp_bpf_<name> that carries
# the include path to the skeleton; link it to use the skeleton.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(MEMHP_BPF_ARCH x86)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64")
  set(MEMHP_BPF_ARCH arm64)
endif()

function(memhp_bpf_object name source)
  set(out_dir ${CMAKE_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  get_filename_component(src_abs ${source} ABSOLUTE)
  get_filename_component(src_dir ${src_abs} DIRECTORY)
  file(GLOB bpf_headers ${src_dir}/*.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    # -mcpu=v3 (ALU32, JMP32: Linux 5.1+). No fetching atomics (5.12+): 5.10 must load these;
    # tests/quick/bpf_no_fetch_atomics.sh checks the objects.
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_${MEMHP_BPF_ARCH}
            -Wall -Werror -I${src_dir} -I${CMAKE_SOURCE_DIR}/bpf
            -idirafter /usr/include/x86_64-linux-gnu
            -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${bpf_headers}
    COMMENT "BPF ${name}.bpf.c")
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "Skeleton ${name}.skel.h")
  add_custom_target(memhp_bpf_${name}_gen DEPENDS ${skel})
  add_library(memhp_bpf_${name} INTERFACE)
  add_dependencies(memhp_bpf_${name} memhp_bpf_${name}_gen)
  target_include_directories(memhp_bpf_${name} INTERFACE ${out_dir} ${CMAKE_SOURCE_DIR}/bpf)
endfunction()
