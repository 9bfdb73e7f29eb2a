/** Injection token of the validated ServiceConfig (see service-config.ts). */
export const SERVICE_CONFIG = Symbol('SERVICE_CONFIG');
