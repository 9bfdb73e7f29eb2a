// temporary: callers move to ../config/urls
export {
  aliasOf,
  candidateURLs,
  canonicalURL,
  executableExtension,
  normaliseDependency,
  parseRealmURL as canonicalRealmURL,
  RealmRegistry,
  UrlResolver,
  urlVariants,
} from '../config/urls';
