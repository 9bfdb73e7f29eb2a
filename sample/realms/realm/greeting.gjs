// A template-only component: the file is one top-level <template>, which content-tag makes the
// module's default export. JavaScript (.gjs) around the template, and a helper from a package.
import { concat } from '@ember/helper';

<template>
  <h2 class='greeting' title={{concat 'Hello ' @name}}>Hello, {{@name}}!</h2>
</template>
